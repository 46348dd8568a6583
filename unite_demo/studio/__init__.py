"""The studio layer: a page's values -> a validated run -> display-ready updates, with the loaded
worlds, the result cache, live mode's tickets and the saved files. No UI toolkit is imported here."""
