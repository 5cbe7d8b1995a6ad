"""class :class:`BERG`: the user-facing API, call-compatible with the reference BERG toolkit."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from berg_core.arguments import (
    require_device,
    require_flag,
    require_int,
    require_name,
    require_names,
    require_path,
    require_real,
)
from berg_core.cards import ModelCard
from berg_core.dims import split_selection
from berg_core.encoder import EncodingModel, LoadRequest
from berg_core.errors import InvalidParameterError, ModelLoadError, describe_value
from berg_core.locations import default_berg_dir
from berg_core.parameters import describe_entry
from berg_core.registry import (
    ModelEntry,
    Registry,
    get_registry,
    load_metadata,
    resolve_import_path,
)
from berg_core.schemas import validate_options, validate_selection
from berg_core.stimulus import as_stimulus

__all__ = ["BERG", "default_berg_dir"]


class BERG:
    """Entry point to every installed encoding model.

    Parameters
    ----------
    berg_dir : str or Path, optional
        Folder holding the model files, laid out as the reference toolkit's bucket
        (``encoding_models/modality-*/train_dataset-*/model-*/...``). Defaults to ``$BERG_DIR``,
        else a per-user data directory (:func:`default_berg_dir`).

    Examples
    --------
    >>> from berg_core import BERG
    >>> berg = BERG("path/to/brain-encoding-response-generator")  # doctest: +SKIP
    >>> model_id = "fmri-nsd_fsaverage-alexnet_untrained"
    >>> model = berg.get_encoding_model(model_id, subject=1)  # doctest: +SKIP
    >>> lh, rh = berg.encode(model, images)  # doctest: +SKIP
    """

    def __init__(self, berg_dir: str | os.PathLike[str] | None = None) -> None:
        if berg_dir is None:
            self.berg_dir = default_berg_dir()
        else:
            self.berg_dir = require_path(berg_dir, "berg_dir")

    def __repr__(self) -> str:
        return f"BERG(berg_dir={str(self.berg_dir)!r})"

    @property
    def registry(self) -> Registry:
        """The registry of installed models (built on first use)."""
        return get_registry()

    # -- discovery --------------------------------------------------------------------------
    def list_models(
        self,
        pattern: str | None = None,
        *,
        expand: tuple[str, ...] | list[str] = (),
        expand_brainscore_vision: bool = False,
        expand_brainscore_language: bool = False,
    ) -> list[str]:
        """Ids of the installed models, sorted.

        Parameters
        ----------
        pattern : str, optional
            Shell-style wildcard (``"fmri-nsd*"``), or a substring.
        expand : sequence of str
            Gateway ids of model families to replace by their members.
        expand_brainscore_vision, expand_brainscore_language : bool
            Reference-toolkit spelling of ``expand=("brainscore_vision",)``.
        """
        if isinstance(pattern, bool):  # reference order: list_models(expand_brainscore_vision)
            expand_brainscore_vision, pattern = pattern, None
        if pattern is not None:
            pattern = require_name(pattern, "pattern", "a wildcard pattern or substring")
        families = [] if expand is None else require_names(expand, "expand", "a model family id")
        if require_flag(expand_brainscore_vision, "expand_brainscore_vision"):
            families.append("brainscore_vision")
        if require_flag(expand_brainscore_language, "expand_brainscore_language"):
            families.append("brainscore_language")
        return self.registry.model_ids(pattern, expand=families)

    def get_model_catalog(self, print_format: bool = False) -> dict[str, list[str]]:
        """Modalities and the training datasets available for each.

        Returns
        -------
        dict of str to list of str
            ``{modality: sorted training datasets}``; printed as a tree if *print_format*.
        """
        print_format = require_flag(print_format, "print_format")
        catalog: dict[str, set[str]] = {}
        for entry in self.registry.models.values():
            catalog.setdefault(entry.card.modality, set()).add(entry.card.training_dataset)
        result = {modality: sorted(sets) for modality, sets in sorted(catalog.items())}
        if print_format:
            print("Available Modalities and Datasets:")
            print("=" * 34)
            for modality, datasets in result.items():
                print(f"• {modality.upper()}")
                for dataset in datasets:
                    print(f"  └─ {dataset}")
        return result

    def describe(self, model_id: str, print_format: bool = True) -> dict[str, Any]:
        """The model's card as a dict (printed when *print_format*, as the reference does).

        Returns
        -------
        dict
            The card's fields (:meth:`ModelCard.to_dict`), ``distribution`` (the plugin),
            ``selection_keys``, and the reference toolkit's ``parameters`` entry (valid values
            of ``subject``, of each selection key, of ``device`` ...; see
            :mod:`berg_core.parameters`) with ``parameters_by_function``.
        """
        print_format = require_flag(print_format, "print_format")
        info = describe_entry(*self._resolve(model_id))
        if print_format:
            from berg_core.render import format_card

            print(format_card(info))
        return info

    # -- models -----------------------------------------------------------------------------
    def get_encoding_model(
        self,
        model_id: str,
        subject: int | str | None = None,
        selection: Mapping[str, Any] | None = None,
        device: str = "auto",
        *,
        download: bool = False,
        **kwargs: Any,
    ) -> EncodingModel:
        """Load an encoding model.

        Parameters
        ----------
        model_id : str
            Id from :meth:`list_models`.
        subject : int or str, optional
            One of the card's subjects (required when the model has subjects).
        selection : dict, optional
            Which outputs to compute; keys depend on the model (see :meth:`describe`).
        device : {"auto", "cpu", "cuda", "cuda:N", "mps"}
            Where to run; ``"auto"`` picks CUDA when available.
        download : bool
            First download the files the model needs for *subject* that are missing from
            ``berg_dir`` (the card's ``files``), from ``$BERG_BASE_URL`` or the public BERG
            bucket; see :mod:`berg_core.fetch`.
        **kwargs
            Model-specific options listed in the card's ``options``.

        Returns
        -------
        EncodingModel

        Raises
        ------
        ModelNotFoundError, InvalidParameterError, ModelLoadError, PluginError
        """
        entry, request = self._request(model_id, subject, selection, device, kwargs)
        if require_flag(download, "download") and request.card.files:
            from berg_core.fetch import fetch_files

            fetch_files(request.card.files_for(request.subject), self.berg_dir)
        loader = resolve_import_path(entry.loader, f"loader of {model_id}")
        model = loader(request)
        if not isinstance(model, EncodingModel):
            raise ModelLoadError(
                f"{entry.plugin.label}: the loader of {model_id} returned {type(model).__name__}, "
                f"not an EncodingModel"
            )
        if request.dim_picks:  # a coordinate the model does not have: an error now, not later
            try:
                model.shapes()
            except BaseException:
                model.close()
                raise
        return model

    def fetch(
        self,
        model_id: str,
        subject: int | str | None = None,
        *,
        base_url: str | None = None,
        show_progress: bool = True,
        **options: Any,
    ) -> list[Path]:
        """Download the files *model_id* needs for *subject* that are missing from ``berg_dir``.

        Parameters
        ----------
        model_id : str
            Id from :meth:`list_models`.
        subject : int or str, optional
            One of the card's subjects (required when the model has subjects).
        base_url : str, optional
            Mirror to download from (default ``$BERG_BASE_URL``, else the public BERG bucket).
        show_progress : bool
            Show a progress bar per file.
        **options
            ``retries``, ``backoff``, ``timeout``, ``verify_etag``: see
            :func:`berg_core.fetch.fetch_files`.

        Returns
        -------
        list of Path
            The model's files under ``berg_dir`` (empty when its card lists none).

        Raises
        ------
        ModelNotFoundError, InvalidParameterError, ModelLoadError
        """
        from berg_core.fetch import fetch_files, fetch_model

        self._resolve(model_id)
        if base_url is not None:
            base_url = require_name(base_url, "base_url", "a mirror URL")
        show_progress = require_flag(show_progress, "show_progress")
        accepted = [
            p.name
            for p in inspect.signature(fetch_files).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise InvalidParameterError(
                f"fetch() got unexpected option(s) {', '.join(unknown)}; options it accepts: "
                f"{', '.join(accepted)}"
            )
        checks = {
            "retries": lambda v: require_int(v, "retries", minimum=0),
            "backoff": lambda v: require_real(v, "backoff"),
            "timeout": lambda v: require_real(v, "timeout", positive=True),
            "verify_etag": lambda v: require_flag(v, "verify_etag"),
        }
        options = {k: checks[k](v) if k in checks else v for k, v in options.items()}
        return fetch_model(
            model_id,
            subject,
            self.berg_dir,
            base_url=base_url,
            show_progress=show_progress,
            **options,
        )

    def _resolve(self, model_id: Any) -> tuple[ModelEntry, ModelCard]:
        """The registry entry and card of *model_id*, which must be a string."""
        if isinstance(model_id, np.str_):
            model_id = str(model_id)
        if not isinstance(model_id, str):
            raise InvalidParameterError(
                f"model_id = {describe_value(model_id)} is not valid; expected a model id "
                f"string (see list_models())"
            )
        return self.registry.resolve(model_id)

    def _request(
        self,
        model_id: str,
        subject: Any,
        selection: Mapping[str, Any] | None,
        device: str,
        options: dict[str, Any],
    ) -> tuple[ModelEntry, LoadRequest]:
        entry, card = self._resolve(model_id)
        model_id = card.model_id
        subject = card.check_subject(subject)
        device = require_device(device)
        options = validate_options(card.options, options, model_id)
        if selection is not None and not isinstance(selection, Mapping):
            raise InvalidParameterError(
                f"selection = {describe_value(selection)} is not valid for {model_id}; expected "
                f"a dict (or None)"
            )
        schema = entry.resolve_schema()
        selection, dim_picks = split_selection(
            selection, card.dim_names, tuple(schema.model_fields) if schema else (), model_id
        )
        if schema is None:
            if selection:
                raise InvalidParameterError(
                    f"selection = {describe_value(selection)}: {model_id} takes no selection"
                )
            validated = None
        else:
            if card.selection_required and not selection and not dim_picks:
                # a schema that rejects an empty selection says why (e.g. listing valid values)
                validate_selection(schema, selection, model_id)
                raise InvalidParameterError(
                    f"selection is required for {model_id}; keys: {', '.join(schema.model_fields)}"
                )
            validated = validate_selection(schema, selection, model_id)
        return entry, LoadRequest(
            model_id=model_id,
            card=card,
            berg_dir=self.berg_dir,
            subject=subject,
            selection=validated,
            device=device,
            options=dict(options),
            dim_picks=dim_picks,
        )

    def encode(
        self,
        model: EncodingModel,
        stimulus: Any,
        return_metadata: bool = False,
        show_progress: bool = True,
        *,
        return_xarray: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Generate in silico responses of *model* to *stimulus*.

        Parameters
        ----------
        model : EncodingModel
            From :meth:`get_encoding_model`.
        stimulus : array, folder, image path(s) or PIL images
            ``(N, 3, H, W)`` integers 0-255 or floats in [0, 1]; see
            :func:`berg_core.stimulus.as_stimulus`.
        return_metadata : bool
            Also return the metadata dict (the subject's metadata plus an ``"output"`` entry
            saying which vertex/voxel/neuroid each column is).
        show_progress : bool
            Show a progress bar.
        return_xarray : bool
            Return the responses as an :class:`xarray.Dataset` with their dims and coordinates
            (:func:`berg_core.labels.to_xarray`; the ``image`` coordinate is the image file
            names when the images came from files). Needs ``pip install xarray``. Combines with
            *return_metadata*: ``(dataset, metadata)``.

        Returns
        -------
        responses or (responses, metadata)
            ``responses`` is one ``float32`` array ``(N, *shape)`` or, for multi-output models, a
            tuple of them (``(lh, rh)`` for fsaverage models, each ``(N, columns)``); the axes
            after the image axis are :meth:`EncodingModel.dims`, their coordinates
            :meth:`EncodingModel.coords`. With *return_xarray*, an :class:`xarray.Dataset`.

        Raises
        ------
        BergError
            *return_xarray* without xarray installed (checked before encoding).
        """
        if not isinstance(model, EncodingModel):
            raise InvalidParameterError(
                f"model is a {type(model).__name__}; expected a model from get_encoding_model()"
            )
        if kwargs:
            raise InvalidParameterError(
                f"encode() got unexpected argument(s) {', '.join(sorted(kwargs))}; it takes "
                f"model, stimulus, return_metadata, show_progress and return_xarray (model "
                f"options such as batch_size are given to get_encoding_model, when the model's "
                f"card lists them)"
            )
        return_metadata = require_flag(return_metadata, "return_metadata")
        show_progress = require_flag(show_progress, "show_progress")
        if require_flag(return_xarray, "return_xarray"):
            from berg_core.labels import require_xarray

            require_xarray()  # before the work, not after it
        stimulus = as_stimulus(stimulus)
        responses = model.encode(stimulus, show_progress=show_progress)
        if return_xarray:
            from berg_core.labels import to_xarray

            responses = to_xarray(model, responses, images=stimulus.sources)
        if return_metadata:
            return responses, model.response_metadata()
        return responses

    def get_model_metadata(
        self, model_id: str, subject: int | str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Per-subject metadata of a model, read without loading the model.

        Raises
        ------
        ModelNotFoundError, InvalidParameterError, ModelLoadError
        """
        if kwargs:
            raise InvalidParameterError(
                f"get_model_metadata() got unexpected argument(s) {', '.join(sorted(kwargs))}; "
                f"it takes model_id and subject"
            )
        entry, card = self._resolve(model_id)
        subject = card.check_subject(subject)
        return load_metadata(entry, card, self.berg_dir, subject)
