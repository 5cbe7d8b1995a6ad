"""Training settings of a FactorTopy encoder (no torch here: the CLI reads the defaults)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from berg_core import InvalidParameterError
from berg_factortopy.threads import check_threads

__all__ = ["CACHE_MODES", "RUNTIME_FIELDS", "TrainConfig"]

#: Token cache modes: ``auto`` (RAM when the tokens fit in ``cache_ram_gb``, else an HDF5 file),
#: ``ram``, ``disk`` (HDF5 file) or ``none`` (run the backbone on every training step).
CACHE_MODES = ("auto", "ram", "disk", "none")
#: Settings a resumed run may change; all others are taken from the checkpoint.
RUNTIME_FIELDS = ("epochs", "device", "threads", "cache", "cache_path", "cache_ram_gb")


@dataclass
class TrainConfig:
    """Everything that defines a FactorTopy training run (stored in the checkpoint's config).

    Attributes
    ----------
    backbone : str
        Built-in backbone name (``vit_b_16``, ``vit_b_32``, ``alexnet``, ``alexnet_untrained``)
        or import path ``"package.module:factory"`` of one with ``get_tokens``.
    backbone_kwargs : dict
        Keyword arguments of the backbone's builder (JSON values).
    bottleneck : int
        Common width D of every layer after the channel bottleneck.
    hidden : int
        Width of the selector MLPs.
    n_frequencies : int
        Octaves of the selectors' Fourier features of the sphere coordinates.
    epochs : int
        Passes over the training images.
    batch_size : int
        Images per optimisation step.
    lr, weight_decay : float
        AdamW settings.
    reg_weight : float
        Initial weight of the selector entropy regulariser (it keeps layer and scale choices
        undecided early on).
    reg_decay_steps : int
        Optimisation steps over which that weight decays linearly to zero.
    val_fraction : float
        Fraction of the images held out for validation (chosen at random with *seed*).
    seed : int
        Seeds the split, the initial weights and the order of the training images.
    cache : str
        Token cache mode, one of :data:`CACHE_MODES`.
    cache_dtype : str
        ``float16`` (half the memory) or ``float32`` for cached tokens.
    cache_path : str or None
        HDF5 cache file (default: ``token_cache.h5`` in the checkpoint folder). An existing file
        made from the same images and backbone is reused.
    cache_ram_gb : float or None
        RAM the ``auto`` mode may use for the cache (default: half the available memory).
    stats_images : int
        Training images used to estimate each channel's mean and standard deviation.
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    threads : int or None
        torch's intra-op threads during training (``None``: leave torch's setting); on busy
        shared cores fewer threads can be much faster (see :mod:`berg_factortopy.threads`).
    """

    backbone: str = "vit_b_16"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    bottleneck: int = 128
    hidden: int = 128
    n_frequencies: int = 6
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 3e-4
    reg_weight: float = 0.1
    reg_decay_steps: int = 2000
    val_fraction: float = 0.1
    seed: int = 0
    cache: str = "auto"
    cache_dtype: str = "float16"
    cache_path: str | None = None
    cache_ram_gb: float | None = None
    stats_images: int = 256
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every value.

        Raises
        ------
        InvalidParameterError
            Naming the first setting with a bad value.
        """
        positive = ("bottleneck", "hidden", "n_frequencies", "epochs", "batch_size")
        for name in (*positive, "stats_images"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(f"{name} = {value!r} must be a positive integer")
        for name in ("reg_decay_steps", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidParameterError(f"{name} = {value!r} must be an integer >= 0")
        for name in ("lr", "weight_decay", "reg_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise InvalidParameterError(f"{name} = {value!r} must be a number >= 0")
        check_threads(self.threads)
        if not 0 < self.val_fraction < 1:
            raise InvalidParameterError(f"val_fraction = {self.val_fraction!r} must be in (0, 1)")
        if self.cache not in CACHE_MODES:
            raise InvalidParameterError(
                f"cache = {self.cache!r} must be one of {', '.join(CACHE_MODES)}"
            )
        if self.cache_dtype not in ("float16", "float32"):
            raise InvalidParameterError(
                f"cache_dtype = {self.cache_dtype!r} must be 'float16' or 'float32'"
            )
        if self.cache_ram_gb is not None and not self.cache_ram_gb >= 0:
            raise InvalidParameterError(f"cache_ram_gb = {self.cache_ram_gb!r} must be >= 0")
        if not isinstance(self.backbone, str) or not self.backbone:
            raise InvalidParameterError(f"backbone = {self.backbone!r} must be a name")
        try:
            json.dumps(self.backbone_kwargs)
        except TypeError as exc:
            raise InvalidParameterError(
                f"backbone_kwargs must hold JSON values (they are stored in the checkpoint): {exc}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Settings from :meth:`to_dict` output; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidParameterError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**values)

    def resumed(self, runtime: TrainConfig | None) -> TrainConfig:
        """These (stored) settings with the :data:`RUNTIME_FIELDS` of *runtime* applied."""
        if runtime is None:
            return self
        values = self.to_dict()
        values.update({name: getattr(runtime, name) for name in RUNTIME_FIELDS})
        return TrainConfig.from_dict(values)
