"""Model cards: the facts a model family declares about each model it provides.

A card binds together what belongs together: identity and provenance (shown by ``berg describe``
and :meth:`berg_core.BERG.describe`), the valid subjects, the names of the model's outputs, the
files it reads under ``berg_dir`` and the extra keyword options its loader accepts. Core code reads
the card; nothing about a model is repeated elsewhere.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["ModelCard"]


class ModelCard(BaseModel):
    """Everything berg knows about one encoding model before loading it.

    Parameters
    ----------
    model_id : str
        Unique id, ``{modality}-{dataset}-{model}`` by convention (e.g.
        ``"fmri-nsd_fsaverage-alexnet_untrained"``).
    modality, training_dataset, species, stimuli, model_type, creator, description : str
        Human-readable provenance, as in the reference model cards.
    subjects : tuple of int or str
        Valid values of ``subject``. Empty when the model takes no subject.
    outputs : tuple of str
        Names of the arrays :func:`encode` returns, in order. One name means ``encode`` returns a
        single array; several mean a tuple (``("lh", "rh")`` for fsaverage models).
    output_description : str
        What each output column is (vertex, voxel, neuroid ...).
    selection_required : bool
        Whether ``selection`` must be given.
    files : tuple of str
        Paths under ``berg_dir`` the model reads for one subject, as :meth:`str.format` templates
        with the field ``subject`` (e.g. ``".../weights_subject-{subject:02d}.npy"``).
    options : tuple of str
        Extra keyword arguments :meth:`BERG.get_encoding_model` accepts for this model.
    references : dict of str to str
        Label -> URL or citation.
    performance : str
        Where to find accuracy figures.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_id: str = Field(min_length=1)
    modality: str
    training_dataset: str
    species: str
    stimuli: str = "Images"
    model_type: str
    creator: str = ""
    description: str = ""
    subjects: tuple[int | str, ...] = ()
    outputs: tuple[str, ...] = ("responses",)
    output_description: str = ""
    selection_required: bool = False
    files: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    references: dict[str, str] = Field(default_factory=dict)
    performance: str = ""

    @field_validator("model_id")
    @classmethod
    def _id_has_no_spaces(cls, value: str) -> str:
        if value != value.strip() or any(ch.isspace() for ch in value):
            raise ValueError(f"model ids contain no whitespace, got {value!r}")
        return value

    @field_validator("outputs")
    @classmethod
    def _at_least_one_output(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("a model has at least one output")
        if len(set(value)) != len(value):
            raise ValueError(f"output names must be unique, got {value}")
        return value

    def files_for(self, subject: int | str | None) -> list[str]:
        """Return the paths (relative to ``berg_dir``) this model reads for *subject*."""
        return [template.format(subject=subject) for template in self.files]

    def with_id(self, model_id: str) -> ModelCard:
        """Return a copy of this card for a member *model_id* of a model family."""
        return self.model_copy(update={"model_id": model_id})

    def to_dict(self) -> dict[str, Any]:
        """Return the card as a plain dict, with the reference toolkit's ``describe`` keys added."""
        data = {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in self.model_dump().items()
        }
        data["model_info"] = {
            "modality": self.modality,
            "training_dataset": self.training_dataset,
            "model_architecture": self.model_type,
            "creator": self.creator,
        }
        data["example_usage"] = self.example_usage()
        return data

    def example_usage(self) -> str:
        """Return a short Python example that loads this model and encodes images."""
        subject = f", subject={self.subjects[0]!r}" if self.subjects else ""
        outputs = ", ".join(self.outputs) if len(self.outputs) > 1 else "responses"
        return (
            "from berg_core import BERG\n"
            'berg = BERG(berg_dir="path/to/brain-encoding-response-generator")\n'
            f"model = berg.get_encoding_model({self.model_id!r}{subject})\n"
            "# images: uint8 array (N, 3, H, W), a folder, or a list of image paths\n"
            f"{outputs} = berg.encode(model, images)\n"
        )
