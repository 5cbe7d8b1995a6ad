"""berg-core: in silico neural responses from brain encoding models, through plugins.

The public face of the package. Model families are separate distributions (``berg-nsd``,
``berg-things``, ``berg-brainscore``) discovered through the ``berg`` entry-point group; importing
this package imports none of them and never imports torch.
"""

from berg_core.api import BERG
from berg_core.cards import Dim, EncodeOptions, FileSpec, ModelCard, Output
from berg_core.encoder import EncodingModel, LoadRequest, OutputWriter
from berg_core.errors import (
    BERGError,
    BergError,
    InvalidParameterError,
    ModelLoadError,
    ModelNotFoundError,
    NotDifferentiableError,
    PluginError,
    StimulusError,
)
from berg_core.hookspecs import hookimpl
from berg_core.schemas import SelectionSchema
from berg_core.sources import ImageSource, open_source
from berg_core.stimulus import Stimulus, as_stimulus

__version__ = "0.1.0"

__all__ = [
    "BERG",
    "BERGError",
    "BergError",
    "Dim",
    "EncodeOptions",
    "EncodingModel",
    "FileSpec",
    "ImageSource",
    "InvalidParameterError",
    "LoadRequest",
    "ModelCard",
    "ModelLoadError",
    "ModelNotFoundError",
    "NotDifferentiableError",
    "Output",
    "OutputWriter",
    "PluginError",
    "SelectionSchema",
    "Stimulus",
    "StimulusError",
    "__version__",
    "as_stimulus",
    "hookimpl",
    "open_source",
]
