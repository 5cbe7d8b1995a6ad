"""berg-nsd: fMRI encoding models of the Natural Scenes Dataset on the fsaverage surface.

Registers, through the ``berg`` entry point (:mod:`berg_nsd.plugin`):

* ``fmri-nsd_fsaverage-alexnet_untrained`` - untrained AlexNet (seeded as the reference does);
* ``fmri-nsd_fsaverage-alexnet`` - torchvision AlexNet, ImageNet weights ``IMAGENET1K_V1``;
* ``fmri-nsd_fsaverage-vit_b_32`` - torchvision ViT-B/32, ImageNet weights ``IMAGENET1K_V1``.

Importing this package (or its plugin module) imports neither torch nor torchvision; they are
imported by :mod:`berg_nsd.model` when a model is loaded.
"""

__version__ = "0.1.0"
