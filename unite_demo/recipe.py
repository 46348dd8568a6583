"""Command line: python -m unite_demo.recipe (the code is unite_demo.worlds.faces.training.recipe)."""

from unite_demo.worlds.faces.training.recipe import main

if __name__ == "__main__":
    main()
