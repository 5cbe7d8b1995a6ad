"""The ``toy_family`` gateway: members ``toy_family-<name>``, each a fixed map of mean RGB."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from berg_core import EncodingModel, InvalidParameterError, LoadRequest, Stimulus
from berg_core.errors import ModelNotFoundError
from berg_testplugin.layout import FAMILY_MEMBERS, FAMILY_OUTPUTS
from berg_testplugin.model import mean_rgb

__all__ = ["ToyFamilyModel", "load", "member_weights", "members"]

PREFIX = "toy_family-"


def members() -> list[str]:
    """Names of the family's members (the lister registered for ``toy_family``)."""
    return list(FAMILY_MEMBERS)


def member_weights(name: str) -> np.ndarray:
    """The ``(3, 4)`` map of member *name*: ``(k + 1) * [[1, 2, 3, 4], ...]`` for member k."""
    k = FAMILY_MEMBERS.index(name)
    base = np.arange(1, 3 * FAMILY_OUTPUTS + 1, dtype=np.float64).reshape(3, FAMILY_OUTPUTS)
    return (k + 1) * base


def load(request: LoadRequest) -> ToyFamilyModel:
    """Loader of the gateway: builds the member named by ``request.model_id``."""
    if not request.model_id.startswith(PREFIX):
        raise InvalidParameterError(
            f"{request.model_id} is a model family, not a model; use one of its members: "
            f"{', '.join(PREFIX + m for m in FAMILY_MEMBERS)}"
        )
    name = request.model_id[len(PREFIX) :]
    if name not in FAMILY_MEMBERS:
        raise ModelNotFoundError(
            f"no model {request.model_id!r} in toy_family; members: "
            f"{', '.join(PREFIX + m for m in FAMILY_MEMBERS)}"
        )
    return ToyFamilyModel(request, member_weights(name))


class ToyFamilyModel(EncodingModel):
    """One member of ``toy_family``: ``mean_rgb(images) @ weights``."""

    def __init__(self, request: LoadRequest, weights: np.ndarray) -> None:
        super().__init__(request)
        self._weights = weights

    def output_sizes(self) -> tuple[int, ...]:
        """One output of four columns."""
        return (self._weights.shape[1],)

    def encode_batches(self, stimulus: Stimulus) -> Iterator[tuple[np.ndarray, ...]]:
        """One array per batch."""
        for batch in stimulus.batches(self.batch_size):
            yield ((mean_rgb(batch) @ self._weights).astype(np.float32),)
