"""berg-things-meg: the reference toolkit's THINGS MEG1 model (271 sensors x 281 times)."""

__version__ = "0.1.0"
