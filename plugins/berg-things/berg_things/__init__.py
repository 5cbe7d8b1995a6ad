"""berg-things: the THINGS-fMRI1 ViT-B/32 whole-brain encoding model as a berg plugin."""

__version__ = "0.1.0"
