"""berg-brainscore: every Brain-Score vision model as a macaque V1/V2/V4/IT encoding model.

Importing this package imports neither ``brainscore_vision`` nor ``torch``; they are imported when a
model is loaded (:mod:`berg_brainscore.model`).
"""

__version__ = "0.1.0"
