"""berg-testplugin: a tiny third-party berg plugin that berg-core's tests install for real.

Importing this package (or its ``plugin`` module, which the ``berg`` entry point names) imports
only berg-core and numpy; the model code in :mod:`berg_testplugin.model` is imported when a model
is requested.
"""

__version__ = "0.1.0"
