"""Gradient-based synthesis: optimise images to drive or suppress an area, or a contrast of areas.

The objective of an image ``x`` is ``J(x) = sum_a w_a * mean(f_a(x))``: for each area ``a`` the
mean of every response its encoder returns (every column of every output its selection keeps,
both hemispheres of an NSD ROI), weighted by ``w_a`` (``+1`` by default; ``[1, -1]`` is the
contrast "A more than B"). ``direction="drive"`` maximises ``J``, ``"suppress"`` minimises it.
Encoders must expose their whole torch path (``EncodingModel.differentiable()``, every
:mod:`berg_core.torchkit` model does).

Images are parameterised and regularised with the usual priors of feature visualisation:

* ``parameterisation="pixel"``: one logit per pixel and channel, the image is its sigmoid;
  ``"fourier"``: a decorrelated parameterisation (Olah et al., Distill 2017) - the logits are the
  inverse real FFT of a spectrum scaled by ``1 / frequency``, mixed through the square root of
  ImageNet's colour covariance, so that gradient steps favour low frequencies and natural colours;
* ``jitter``: each step, the image is rolled by a random offset of at most ``jitter`` pixels
  (seeded) before the encoder sees it;
* ``blur``: the image is the Gaussian blur (standard deviation ``blur`` pixels, reflected edges)
  of the parameterised one;
* ``tv`` and ``l2``: penalties ``tv * TV(x) + l2 * mean((x - 0.5)**2)`` with the anisotropic total
  variation ``TV(x) = mean|x[.., 1:, :] - x[.., :-1, :]| + mean|x[.., :, 1:] - x[.., :, :-1]|``.

The loss of each image is ``-d * J(x') + penalties`` (``d = +1`` to drive, ``-1`` to suppress,
``x'`` the jittered image); images are optimised independently (their losses are summed) with
Adam. Every ``every`` steps (and before the first and after the last) the objective of the current
images, without jitter, is recorded: the trajectory. Randomness (the noise start and the jitter)
comes from a ``torch.Generator`` seeded with ``seed`` on the CPU, so a run is repeatable on one
machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from berg_core import EncodingModel, InvalidParameterError
from berg_core.errors import describe_value

__all__ = ["PARAMETERISATIONS", "SynthesisResult", "synthesise"]

#: Image parameterisations.
PARAMETERISATIONS = ("pixel", "fourier")
#: Directions of the optimisation and the sign of the objective they maximise.
DIRECTIONS = {"drive": 1.0, "suppress": -1.0}
#: Square root of ImageNet's colour covariance (Lucid's ``color_correlation_svd_sqrt``).
COLOUR_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])


@dataclass
class SynthesisResult:
    """What :func:`synthesise` returns.

    Attributes
    ----------
    images : numpy.ndarray
        ``(n, 3, H, W)`` float32 in [0, 1]: the synthesised images.
    steps : numpy.ndarray
        ``(K,)`` the optimisation steps at which the objective was evaluated (0 first).
    objective : numpy.ndarray
        ``(K, n)`` float64: ``J`` of each image at each of those steps (no jitter).
    area_names : tuple of str
    weights : numpy.ndarray
        ``(n_areas,)`` the weight of each area in ``J``.
    responses : numpy.ndarray
        ``(n, n_areas)`` each area's mean response to the final images.
    direction : str
        ``"drive"`` or ``"suppress"``.
    parameters : dict
        Every setting of the run (for the HDF5 file).
    """

    images: np.ndarray
    steps: np.ndarray
    objective: np.ndarray
    area_names: tuple[str, ...]
    weights: np.ndarray
    responses: np.ndarray
    direction: str
    parameters: dict[str, Any] = field(default_factory=dict)

    def images_uint8(self) -> np.ndarray:
        """``(n, 3, H, W)`` ``uint8``: the images as 8-bit files hold them (rounded)."""
        return np.clip(np.rint(self.images * 255.0), 0, 255).astype(np.uint8)

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write ``image_000.png`` ..., ``grid.png``, ``synthesis.h5`` and ``objective.csv``.

        ``grid.png`` shows the images and the objective's trajectory; ``synthesis.h5`` holds
        ``images``, ``steps``, ``objective``, ``responses``, ``area_names``, ``weights`` and the
        parameters as attributes; ``objective.csv`` has one row per (step, image).

        Returns
        -------
        list of Path
            The files written.
        """
        import h5py
        from PIL import Image

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for i, image in enumerate(self.images_uint8()):
            path = out / f"image_{i:03d}.png"
            Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(path)
            written.append(path)
        written.append(self._grid(out / "grid.png"))
        h5 = out / "synthesis.h5"
        with h5py.File(h5, "w") as f:
            f["images"] = self.images
            f["steps"] = self.steps
            f["objective"] = self.objective
            f["responses"] = self.responses
            f["weights"] = self.weights
            f["area_names"] = np.array(self.area_names, dtype=h5py.string_dtype())
            f.attrs["direction"] = self.direction
            for key, value in self.parameters.items():
                f.attrs[key] = value if isinstance(value, (int, float, str)) else str(value)
        written.append(h5)
        csv = out / "objective.csv"
        lines = ["step,image,objective"]
        for step, row in zip(self.steps, self.objective, strict=True):
            lines += [f"{int(step)},{i},{value!r}" for i, value in enumerate(row.tolist())]
        csv.write_text("\n".join(lines) + "\n")
        written.append(csv)
        return written

    def _grid(self, path: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        n = len(self.images)
        fig, axes = plt.subplots(2, max(n, 1), figsize=(2.2 * max(n, 2), 4.6), squeeze=False)
        for i, image in enumerate(self.images_uint8()):
            ax = axes[0, i]
            ax.imshow(image.transpose(1, 2, 0))
            ax.set_title(f"J = {self.objective[-1, i]:.3g}", fontsize=8)
            ax.axis("off")
        for ax in axes[1, 1:]:
            ax.remove()
        ax = axes[1, 0]
        if n > 1:
            ax.set_position(axes[1, 0].get_position().union([a.get_position() for a in axes[0]]))
        ax.plot(self.steps, self.objective)
        ax.set_xlabel("step")
        ax.set_ylabel(f"objective J ({self.direction})")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


# -- checks ---------------------------------------------------------------------------------------
def _positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidParameterError(
            f"{name}={describe_value(value)}: expected an integer >= {minimum}"
        )
    return int(value)


def _non_negative(value: Any, name: str, *, positive: bool = False) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        ok = math.isfinite(float(value)) and (float(value) > 0 if positive else value >= 0)
    if not ok:
        allowed = "a finite number > 0" if positive else "a finite number >= 0"
        raise InvalidParameterError(f"{name}={describe_value(value)}: expected {allowed}")
    return float(value)


def _choice(value: Any, name: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise InvalidParameterError(
            f"{name}={describe_value(value)}: expected one of {list(allowed)}"
        )
    return str(value)


def _start_images(start: Any, n_images: int, size: int) -> np.ndarray | None:
    """``None`` for noise, else the start images as float64 ``(n, 3, H, W)`` in [0, 1]."""
    if isinstance(start, str):
        _choice(start, "start", ["noise"])
        return None
    if not isinstance(start, np.ndarray) or start.ndim != 4 or start.shape[1] != 3:
        raise InvalidParameterError(
            f"start={describe_value(start)}: expected 'noise' or an array (N, 3, H, W) of "
            f"uint8 or of floats in [0, 1]"
        )
    if start.dtype == np.uint8:
        return start.astype(np.float64) / 255.0
    if (
        start.dtype.kind == "f"
        and np.isfinite(start).all()
        and 0 <= start.min() <= start.max() <= 1
    ):
        return start.astype(np.float64)
    raise InvalidParameterError(
        f"start={describe_value(start)}: expected uint8 values or finite floats in [0, 1]"
    )


# -- image parameterisations and priors ------------------------------------------------------------
def _parameterise(kind: str, start: np.ndarray | None, n: int, size: tuple[int, int], gen: Any):
    """The trainable tensor and the function turning it into images in [0, 1]."""
    import torch

    h, w = size
    eps = 1e-3
    colour = torch.as_tensor(COLOUR_SQRT / np.linalg.norm(COLOUR_SQRT, axis=0).max())
    colour = colour.float()
    if kind == "pixel":
        if start is None:
            logits = 0.5 * torch.randn((n, 3, h, w), generator=gen)
        else:
            x = torch.as_tensor(np.clip(start, eps, 1 - eps))
            logits = torch.log(x / (1 - x)).float()
        return logits, torch.sigmoid
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    scale = 1.0 / torch.maximum(torch.sqrt(fx**2 + fy**2), torch.tensor(1.0 / max(h, w)))
    if start is None:
        spectrum = 0.01 * torch.randn((n, 3, h, w // 2 + 1, 2), generator=gen)
    else:
        x = torch.as_tensor(np.clip(start, eps, 1 - eps))
        logits = torch.log(x / (1 - x)).float()
        decorrelated = torch.einsum("nchw,dc->ndhw", logits, torch.linalg.inv(colour))
        spectrum = torch.view_as_real(torch.fft.rfft2(decorrelated, norm="ortho") / scale)

    def render(spectrum: Any) -> Any:
        full = torch.view_as_complex(spectrum) * scale.to(spectrum.device)
        logits = torch.fft.irfft2(full, s=(h, w), norm="ortho")
        mixed = torch.einsum("ndhw,cd->nchw", logits, colour.to(spectrum.device))
        return torch.sigmoid(mixed)

    return spectrum.contiguous(), render


def _gaussian_blur(images: Any, sigma: float) -> Any:
    import torch
    import torch.nn.functional as F  # noqa: N812

    radius = max(1, math.ceil(2 * sigma))
    radius = min(radius, images.shape[-1] - 1, images.shape[-2] - 1)
    t = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    x = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)


def total_variation(images: Any) -> Any:
    """Anisotropic total variation of each image, ``(n,)``."""
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    return dy + dx


# -- the objective --------------------------------------------------------------------------------
def _load(
    areas: Any, berg: Any, device: str | None, subject: Any = None
) -> tuple[list[EncodingModel], list[str], list[EncodingModel]]:
    """Models and names of *areas*, and the models loaded here (to close after)."""
    from berg_insilico.areas import Area

    if isinstance(areas, (EncodingModel, Area)):
        areas = [areas]
    if not isinstance(areas, Sequence) or isinstance(areas, str) or not areas:
        raise InvalidParameterError(
            f"areas={describe_value(areas)}: expected an EncodingModel, an Area or a non-empty "
            f"sequence of them"
        )
    models, names, loaded = [], [], []
    try:
        for i, area in enumerate(areas):
            if isinstance(area, EncodingModel):
                models.append(area)
                names.append(f"{area.model_id}" + (f"-sub{area.subject}" if area.subject else ""))
            elif isinstance(area, Area):
                if berg is None:
                    raise InvalidParameterError(
                        f"areas[{i}] is an Area ({area.name!r}); pass berg=BERG(...) to load it"
                    )
                options = dict(area.options)
                if device is not None:
                    options.setdefault("device", device)
                model = berg.get_encoding_model(
                    area.model_id, subject=subject, selection=area.selection, **options
                )
                models.append(model)
                loaded.append(model)
                names.append(area.name)
            else:
                raise InvalidParameterError(
                    f"areas[{i}]={describe_value(area)}: expected an EncodingModel or an Area"
                )
    except BaseException:
        for model in loaded:
            model.close()
        raise
    return models, names, loaded


def _weights(weights: Any, n_areas: int) -> np.ndarray:
    if weights is None:
        return np.ones(n_areas)
    values = np.asarray(weights, dtype=object)
    ok = values.ndim == 1 and len(values) == n_areas
    if ok:
        try:
            values = values.astype(np.float64)
        except (TypeError, ValueError):
            ok = False
    if not ok or not np.isfinite(values).all() or not np.any(values != 0):
        raise InvalidParameterError(
            f"weights={describe_value(weights)}: expected {n_areas} finite numbers (one per "
            f"area), not all zero"
        )
    return values


def synthesise(
    areas: Any,
    *,
    berg: Any = None,
    subject: int | str | None = None,
    weights: Sequence[float] | None = None,
    direction: str = "drive",
    n_images: int = 1,
    size: int = 128,
    start: str | np.ndarray = "noise",
    steps: int = 256,
    lr: float = 0.05,
    parameterisation: str = "fourier",
    jitter: int = 0,
    blur: float = 0.0,
    tv: float = 0.0,
    l2: float = 0.0,
    every: int = 8,
    seed: int = 0,
    device: str | None = None,
    show_progress: bool = True,
) -> SynthesisResult:
    """Optimise images to drive or suppress an area, or a weighted contrast of areas.

    Parameters
    ----------
    areas : EncodingModel, Area or sequence of them
        The areas: loaded models (with the selection that makes the area), or
        :class:`berg_insilico.Area` configurations, loaded through *berg* (and closed after).
    berg : BERG, optional
        Needed when *areas* holds :class:`~berg_insilico.Area` s.
    subject : int or str, optional
        The subject whose encoders the Areas are loaded for.
    weights : sequence of float, optional
        One weight per area in the objective ``J = sum w_a * mean(f_a(x))``; default all 1.
    direction : {"drive", "suppress"}
        Maximise or minimise ``J``.
    n_images : int
        Images optimised side by side from noise (ignored with start images: one per image).
    size : int
        Side of the square images synthesised from noise (start images keep their size).
    start : "noise" or numpy.ndarray
        Noise (seeded), or natural images ``(N, 3, H, W)``, ``uint8`` or floats in [0, 1].
    steps : int
        Adam steps.
    lr : float
        Adam's learning rate.
    parameterisation : {"fourier", "pixel"}
        See the module docstring.
    jitter : int
        Largest random shift in pixels per step (0: none).
    blur : float
        Standard deviation of the Gaussian blur in pixels (0: none).
    tv, l2 : float
        Weights of the total-variation and L2 penalties.
    every : int
        Record the objective every this many steps.
    seed : int
        Seed of the noise start and the jitter.
    device : str, optional
        Where to optimise: the areas' device (``"cpu"``, ``"cuda"``, ...). Models given loaded
        must already be there; Areas are loaded there. Default (or ``"auto"``): the first
        model's device.
    show_progress : bool
        A progress bar over the steps.

    Returns
    -------
    SynthesisResult

    Raises
    ------
    InvalidParameterError
        A parameter out of range (named, with the value and what is allowed), areas on different
        devices or not on *device*.
    NotDifferentiableError
        An area's model has no differentiable path.
    """
    import torch
    from tqdm.auto import tqdm

    sign = DIRECTIONS[_choice(direction, "direction", list(DIRECTIONS))]
    kind = _choice(parameterisation, "parameterisation", PARAMETERISATIONS)
    steps = _positive_int(steps, "steps")
    every = _positive_int(every, "every")
    size = _positive_int(size, "size", minimum=8)
    n_images = _positive_int(n_images, "n_images")
    jitter = _positive_int(jitter, "jitter", minimum=0)
    seed = _positive_int(seed, "seed", minimum=0)
    lr = _non_negative(lr, "lr", positive=True)
    blur, tv, l2 = (_non_negative(v, n) for v, n in ((blur, "blur"), (tv, "tv"), (l2, "l2")))
    first = _start_images(start, n_images, size)
    shape = (size, size) if first is None else first.shape[2:]
    n = n_images if first is None else len(first)
    if jitter >= min(shape):
        raise InvalidParameterError(
            f"jitter={jitter}: expected fewer pixels than the image side {min(shape)}"
        )
    if device is not None and not isinstance(device, str):
        raise InvalidParameterError(f"device={describe_value(device)}: expected a device name")

    models, names, loaded = _load(areas, berg, device, subject)
    try:
        w = _weights(weights, len(models))
        modules = [model.differentiable() for model in models]
        devices = {str(module.device) for module in modules}
        where = modules[0].device if device in (None, "auto") else torch.device(device)
        if devices != {str(where)}:
            raise InvalidParameterError(
                f"device={device!r}: the areas' models are on {sorted(devices)}; load every "
                f"area's model on the device to optimise on"
            )
        gen = torch.Generator().manual_seed(seed)
        param, render = _parameterise(kind, first, n, shape, gen)
        param = param.to(where).requires_grad_(True)
        optimiser = torch.optim.Adam([param], lr=lr)
        w_t = torch.as_tensor(w, dtype=torch.float32, device=where)

        def image() -> Any:
            x = render(param)
            return _gaussian_blur(x, blur) if blur > 0 else x

        def area_means(x: Any) -> Any:
            return torch.stack(
                [
                    torch.cat([o.flatten(1) for o in module(x)], dim=1).mean(dim=1)
                    for module in modules
                ],
                dim=1,
            )

        recorded_steps, trajectory = [], []

        def record(step: int) -> None:
            with torch.no_grad():
                means = area_means(image())
            recorded_steps.append(step)
            trajectory.append((means.double() @ w_t.double()).cpu().numpy())

        record(0)
        with tqdm(range(1, steps + 1), desc="Synthesising", disable=not show_progress) as bar:
            for step in bar:
                optimiser.zero_grad(set_to_none=True)
                x = image()
                if jitter:
                    dy, dx = (
                        int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=gen)
                    )
                    x_seen = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
                else:
                    x_seen = x
                objective = area_means(x_seen) @ w_t
                loss = -sign * objective.sum()
                if tv:
                    loss = loss + tv * total_variation(x).sum()
                if l2:
                    loss = loss + l2 * ((x - 0.5) ** 2).mean(dim=(1, 2, 3)).sum()
                loss.backward()
                optimiser.step()
                if step % every == 0 or step == steps:
                    record(step)
                    bar.set_postfix(objective=float(trajectory[-1].mean()))
        with torch.no_grad():
            final = image()
            responses = area_means(final).double().cpu().numpy()
        parameters = dict(
            direction=direction, n_images=n, size=str(tuple(shape)), steps=steps, lr=lr,
            parameterisation=kind, jitter=jitter, blur=blur, tv=tv, l2=l2, every=every,
            seed=seed, device=str(where), start="noise" if first is None else "images",
        )  # fmt: skip
        return SynthesisResult(
            images=final.detach().float().cpu().numpy(),
            steps=np.asarray(recorded_steps, dtype=np.int64),
            objective=np.stack(trajectory),
            area_names=tuple(names),
            weights=w,
            responses=responses,
            direction=direction,
            parameters=parameters,
        )
    finally:
        for model in loaded:
            model.close()
