"""berg-nsd: fMRI encoding models of the Natural Scenes Dataset on the fsaverage surface.

Registers, through the ``berg`` entry point (:mod:`berg_nsd.plugin`):

* ``fmri-nsd_fsaverage-alexnet_untrained`` - untrained AlexNet (seeded as the reference does);
* ``fmri-nsd_fsaverage-alexnet`` - torchvision AlexNet, ImageNet weights ``IMAGENET1K_V1``;
* ``fmri-nsd_fsaverage-vit_b_32`` - torchvision ViT-B/32, ImageNet weights ``IMAGENET1K_V1``.

Importing this package (or its plugin module) imports neither torch nor torchvision; they are
imported by :mod:`berg_nsd.model` when a model is loaded.
"""

__version__ = "0.1.0"

#: The modules other plugins may import (berg-nsd's public API; the rest is private).
#: :mod:`berg_nsd.fsaverage` holds the facts (surface size, hemispheres, ROI names, file layout,
#: readers); :mod:`berg_nsd.cards` the cards and backbone specs; :mod:`berg_nsd.model`
#: ``build_backbone`` and the encoder class; :mod:`berg_nsd.selection` the selection schema;
#: :mod:`berg_nsd.gifti` the GIFTI writer. Depend on berg-nsd with a version bound.
PUBLIC_MODULES = ("fsaverage", "cards", "gifti", "model", "selection")
