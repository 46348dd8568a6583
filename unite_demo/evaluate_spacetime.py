"""Command line: python -m unite_demo.evaluate_spacetime (the code is unite_demo.worlds.faces.evaluation.spacetime)."""

from unite_demo.worlds.faces.evaluation.spacetime import main

if __name__ == "__main__":
    main()
