"""Command line: python -m unite_demo.evaluate (the code is unite_demo.worlds.faces.evaluation.evaluate)."""

from unite_demo.worlds.faces.evaluation.evaluate import main

if __name__ == "__main__":
    main()
