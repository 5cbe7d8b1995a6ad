"""``berg demo``: every part of berg on a small simulated NSD subject, offline.

1. write a SIMULATED NSD subject (fsaverage betas, design, ROIs, stimuli) whose responses are a
   known linear function of untrained-AlexNet features plus noise of known SNR;
2. train the ``alexnet_untrained`` encoder on it with the training engine (``berg train nsd``);
3. print its test accuracy against the noise ceiling (which the simulation knows exactly);
4. load it with ``BERG.get_encoding_model`` and ``encode`` a few images, and check the responses
   against the simulated brain's noise-free responses;
5. write the responses (HDF5, GIFTI) and the accuracy figure.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEMO_MODEL", "run_demo"]

DEMO_MODEL = "fmri-nsd_fsaverage-alexnet_untrained"
_BANNER = "=" * 78


def _say(text: str) -> None:
    print(text, flush=True)


def run_demo(
    out: str | os.PathLike[str] = "berg-demo",
    *,
    full: bool = False,
    device: str = "auto",
    show_progress: bool = True,
) -> dict[str, Any]:
    """Run the demo, writing everything under *out*.

    Parameters
    ----------
    out : path-like
        Output folder (created; a previous demo there is replaced).
    full : bool
        A larger simulation (1,200 training images, 250 PCA components, OLS and ridge) instead
        of the quick one (400 images, 50 components, OLS; about 2 minutes on 2 CPU cores).
    device : str
        Torch device.
    show_progress : bool
        Progress bars.

    Returns
    -------
    dict
        Paths written and the accuracy figures.
    """
    from berg_core import BERG
    from berg_core.output import write_responses
    from berg_core.stimulus import as_stimulus
    from berg_train.cli import report
    from berg_train.datasets.nsd import NSDDataset
    from berg_train.engine import TrainConfig, train
    from berg_train.simulate import simulate_nsd

    started = time.perf_counter()
    out = Path(out)
    data_root = out / "SIMULATED_nsd"
    berg_dir = out / "berg_dir"
    for folder in (data_root, berg_dir):
        if folder.exists():
            shutil.rmtree(folder)
    out.mkdir(parents=True, exist_ok=True)
    n_train, k = (1200, 250) if full else (400, 50)
    _say(_BANNER)
    _say("berg demo - everything below uses SIMULATED data, not real brain responses")
    _say(_BANNER)
    _say(f"1/5 Simulating an NSD subject in {data_root} (SIMULATED) ...")
    sim = simulate_nsd(
        data_root, n_train=n_train, n_test=60, n_val=20, device=device, show_progress=show_progress
    )
    truth = sim.truth()

    _say(f"2/5 Training {DEMO_MODEL} on it (OLS, {k} PCA components) ...")
    dataset = NSDDataset(data_root, 1)
    _say(
        f"    SIMULATED NSD subject 1: {len(dataset.sessions)} sessions, {dataset.trial_ids.size} "
        f"trials; {dataset.train_ids.size} training, {dataset.val_ids.size} validation, "
        f"{dataset.test_ids.size} test images"
    )
    if not full:
        _say("    (the reference recipe uses 250 components for 9,000 images; 50 suit 400)")
    result = train(
        dataset,
        berg_dir,
        TrainConfig(
            backbone="alexnet_untrained",
            regression="ols",
            n_components=k,
            device=device,
            show_progress=show_progress,
        ),
    )
    report(result)
    results = [result]
    if full:
        _say("    ... and with ridge (per-vertex penalty by 5-fold cross-validation)")
        ridge = train(
            dataset,
            berg_dir,
            TrainConfig(
                backbone="alexnet_untrained",
                regression="ridge",
                n_components=k,
                device=device,
                model_name="alexnet_untrained_ridge",
                work_dir=result.work_dir,  # reuses the features and the PCA
                show_progress=show_progress,
            ),
        )
        report(ridge)
        results.append(ridge)

    _say("3/5 Accuracy against the noise ceiling (SIMULATED: the ceiling is known exactly)")
    accuracy = {}
    for hemi in ("lh", "rh"):
        ev = result.evaluation[hemi]
        visual = truth[f"{hemi}_columns"]
        others = np.setdiff1d(np.arange(ev["correlation"].size), visual)
        accuracy[hemi] = {
            "r": float(ev["correlation"][visual].mean()),
            "ceiling_r": float(np.sqrt(ev["noise_ceiling"][visual]).mean()),
            "explained_variance": float(ev["explained_variance"][visual].mean()),
            "r_noise_vertices": float(ev["correlation"][others].mean()),
        }
        a = accuracy[hemi]
        _say(
            f"    {hemi}: {visual.size} simulated visual vertices: mean test r {a['r']:.3f} vs "
            f"noise-ceiling r {a['ceiling_r']:.3f} -> {a['explained_variance']:.1f}% of the "
            f"explainable variance; noise-only vertices: mean r {a['r_noise_vertices']:.3f} "
            f"(chance: negatives are set to 0)"
        )

    _say(f"4/5 Loading it with BERG(berg_dir).get_encoding_model({DEMO_MODEL!r}, subject=1)")
    berg = BERG(berg_dir)
    sample_rows = dataset.test_rows[:8]
    images = dataset.images.load(sample_rows)
    stimulus = as_stimulus(images)
    with berg.get_encoding_model(DEMO_MODEL, subject=1, device=device) as model:
        lh, rh = berg.encode(model, stimulus, show_progress=False)
        position = {int(i): p for p, i in enumerate(truth["subject_image_ids"])}
        positions = [position[int(i)] for i in dataset.images.ids[sample_rows]]
        agreement = []
        for hemi, values in (("lh", lh), ("rh", rh)):
            visual = truth[f"{hemi}_columns"]
            true = truth[f"{hemi}_signal_by_position"][positions]  # noise-free responses
            predicted = values[:, visual]
            agreement.append(np.corrcoef(predicted.ravel(), true.ravel())[0, 1])
        _say(
            f"    encoded {len(stimulus)} test images -> lh {lh.shape}, rh {rh.shape}; "
            f"correlation with the simulated brain's noise-free responses: lh "
            f"{agreement[0]:.3f}, rh {agreement[1]:.3f}"
        )
        _say("5/5 Writing the responses")
        written = write_responses(
            model, stimulus, out / "responses.h5", force=True, show_progress=False
        )
        written += _write_gifti(model, stimulus, out / "responses.func.gii", lh, rh)
    with berg.get_encoding_model(DEMO_MODEL, subject=1, selection={"roi": "V1v"}) as model:
        v1v_lh, v1v_rh = berg.encode(model, stimulus, show_progress=False)
    _say(f"    ROI selection {{'roi': 'V1v'}}: lh {v1v_lh.shape}, rh {v1v_rh.shape}")
    figure = out / "accuracy_SIMULATED.png"
    shutil.copyfile(result.figure_path, figure)
    written.append(figure)
    (out / "README_SIMULATED.txt").write_text(
        "SIMULATED DATA - berg demo output, not real brain responses.\n\n"
        f"{data_root.name}/: the simulated NSD subject (NSD file formats, known ground truth)\n"
        f"berg_dir/: the trained {DEMO_MODEL} model (reference layout) and its work folder\n"
        "responses.h5, responses_hemi-{L,R}.func.gii: responses to 8 test images\n"
        "accuracy_SIMULATED.png: test accuracy per ROI against the noise ceiling\n"
    )
    for path in written:
        _say(f"    wrote {path}")
    elapsed = time.perf_counter() - started
    _say(_BANNER)
    _say(f"berg demo done in {elapsed:.0f} s - SIMULATED data; outputs in {out}")
    _say(_BANNER)
    return {
        "out": out,
        "written": written,
        "accuracy": accuracy,
        "agreement": agreement,
        "results": results,
        "seconds": elapsed,
    }


def _write_gifti(model: Any, stimulus: Any, path: Path, lh: np.ndarray, rh: np.ndarray) -> list:
    """GIFTI through the model's own writer when berg-nsd offers one, else berg-nsd's function."""
    from berg_core.output import write_responses

    if ".func.gii" in model.output_writers():
        return write_responses(model, stimulus, path, force=True, show_progress=False)
    try:
        from berg_nsd.gifti import write_gifti
    except ImportError:  # pragma: no cover - berg-nsd without GIFTI support
        _say("    (this berg-nsd has no GIFTI writer; HDF5 only)")
        return []
    return list(write_gifti((lh, rh), model.columns(), path))
