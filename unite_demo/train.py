"""Command line: python -m unite_demo.train (the code is unite_demo.worlds.faces.training.train)."""

from unite_demo.worlds.faces.training.train import main

if __name__ == "__main__":
    main()
