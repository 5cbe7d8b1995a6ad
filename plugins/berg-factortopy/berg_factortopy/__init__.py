"""berg-factortopy: trainable FactorTopy encoders of NSD fsaverage fMRI, brain maps of deep nets.

Registers, through the ``berg`` entry point (:mod:`berg_factortopy.plugin`):

* the model ``fmri-nsd_fsaverage-factortopy`` - a FactorTopy encoder you train
  (:func:`berg_factortopy.train.train`, ``berg train factortopy``) and load from its checkpoint
  (``get_encoding_model(..., checkpoint=DIR)``);
* the commands ``berg train factortopy`` and ``berg maps``.

Importing this package (or its plugin module) imports neither torch nor nilearn nor matplotlib.
"""

__version__ = "0.1.0"
