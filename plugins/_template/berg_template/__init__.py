"""berg-template: a berg model family to copy (``berg new-plugin NAME`` makes a renamed copy)."""

__version__ = "0.1.0"
