"""berg-tvsd: the reference toolkit's TVSD Utah-array model (1024 electrodes x 300 times)."""

__version__ = "0.1.0"
