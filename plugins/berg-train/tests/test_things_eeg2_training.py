"""``berg train things-eeg2`` on a simulated subject in the reference's prepared layout: recovery
of the planted truth at its noise limit, loading in berg-things-eeg2, scikit-learn parity of the
per-repetition PCA and OLS, resuming, bounded memory and named errors for bad inputs."""

from __future__ import annotations

import glob
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from PIL import Image

from berg_core import InvalidParameterError
from berg_core.safe_npy import in_memory, load_pickled_npy

K = 16  # PCA components (latent truth: 6 dimensions)
N_TRAIN, N_TEST, REPEATS = 64, 24, 20
MODEL_ID = "eeg-things_eeg_2-alexnet_untrained"
U = float(np.finfo(np.float32).eps) / 2


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from berg_train.simulate_eeg2 import simulate_things_eeg2

    return simulate_things_eeg2(
        tmp_path_factory.mktemp("eeg2") / "data",
        n_train=N_TRAIN,
        n_test=N_TEST,
        test_repeats=REPEATS,
        seed=4,
        show_progress=False,
    )


@pytest.fixture(scope="module")
def trained(sim: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from berg_train.things_eeg2 import train_things_eeg2

    berg_dir = tmp_path_factory.mktemp("berg_eeg2")
    return train_things_eeg2(
        sim.root, sim.root / "image_set", 1, berg_dir,
        model="alexnet_untrained", n_components=K, device="cpu", show_progress=False,
    )  # fmt: skip


def _features(result: Any) -> np.ndarray:
    (path,) = glob.glob(str(result.work_dir / "features-*.h5"))
    with h5py.File(path, "r") as h5:
        return h5["features"][:]


def _eeg(root: Path, split: str) -> np.ndarray:
    path = (
        root / "model_training_datasets/train_dataset-things_eeg_2" / f"eeg_sub-01_split-{split}.h5"
    )
    with h5py.File(path, "r") as h5:
        return h5["eeg"][:].astype(np.float64)


def test_recovers_the_planted_truth_at_its_noise_limit(sim: Any, trained: Any) -> None:
    from berg_train.pca import PCAResult

    truth = sim.truth()
    signal, noise_sd = truth["signal"], truth["noise_sd"]
    (pca_file,) = [p for p in glob.glob(str(trained.work_dir / "pca-*.npz")) if "rep" not in p]
    scores = PCAResult.load(Path(pca_file)).scores
    z, zt = scores[:N_TRAIN], scores[N_TRAIN:]
    zc = z - z.mean(axis=0)
    ztc = zt - zt.mean(axis=0)
    # prediction error e = (Zt - mean) delta, delta ~ N(0, sigma^2/4 (Zc'Zc)^-1) (OLS with
    # intercept, mean of 4 independent repetitions): its variance over the test images (ddof 0)
    # has expectation sigma^2/4 tr((Zc'Zc)^-1 Ztc'Ztc / n)
    trace = np.trace(np.linalg.solve(zc.T @ zc, ztc.T @ ztc)) / N_TEST
    v_e = noise_sd**2 / 4 * trace
    v_s = signal[N_TRAIN:].var(axis=0)
    columns = v_s > 0
    v_n = noise_sd[columns] ** 2 / REPEATS * (N_TEST - 1) / N_TEST  # the average's noise
    rho = v_s[columns] / np.sqrt((v_s[columns] + v_e[columns]) * (v_s[columns] + v_n))
    r = trained.correlation_averaged.ravel()
    # sampling SD of one r over n test images (1 - rho^2)/sqrt(n - 1); noise is independent
    # across columns, so the mean over C columns has SD / sqrt(C); plus r's own O(1/n) bias
    n, c = N_TEST, int(columns.sum())
    tolerance = 4 * np.mean((1 - rho**2) / np.sqrt(n - 1)) / np.sqrt(c) + np.mean(
        rho * (1 - rho**2)
    ) / (2 * (n - 3))
    assert abs(r[columns].mean() - rho.mean()) <= tolerance, (r[columns].mean(), rho.mean())
    assert rho.mean() > 0.6  # the test means something: far from chance
    # columns before stimulus onset carry no signal: r ~ N(0, 1/(n - 1)) around 0
    assert abs(r[~columns].mean()) <= 4 / np.sqrt((n - 1) * (~columns).sum())
    # the 4 repetitions' models differ (their regressions), as the reference's guard demands
    p = trained.test_predictions
    assert not np.array_equal(p[:, 0], p[:, 1])


def test_metrics_match_an_independent_computation(sim: Any, trained: Any) -> None:
    from scipy.stats import pearsonr

    test = _eeg(sim.root, "test")  # (n, R, 63, 140)
    average = test.mean(axis=1)
    predictions = trained.test_predictions.astype(np.float64)
    for channel, time in ((15, 60), (0, 0), (40, 139)):
        wanted = pearsonr(predictions[:, :, channel, time].mean(1), average[:, channel, time])[0]
        got = trained.correlation_averaged[channel, time]
        assert abs(got - wanted) < 1e-12  # float64 both, summation order only
        for rep in range(4):
            wanted = pearsonr(predictions[:, rep, channel, time], average[:, channel, time])[0]
            assert abs(trained.correlation_single[rep, channel, time] - wanted) < 1e-12
    # noise ceiling against the planted SNR: NC = 100 v_s / (v_s + sigma^2 / R)
    truth = sim.truth()
    v_s = truth["signal"][N_TRAIN:].var(axis=0, ddof=1).reshape(63, 140)
    sigma2 = (truth["noise_sd"] ** 2).reshape(63, 140)
    planted = 100 * v_s / (v_s + sigma2 / REPEATS)
    after = v_s > 0
    nc = trained.noise_ceiling
    # the estimate of one column scatters by ~ 100 sqrt(2/(n-1)) (1 - NC) (delta method of the
    # variance ratio); its mean stays within 2 such SDs whatever the columns' dependence
    spread = 100 * np.sqrt(2 / (N_TEST - 1)) * (1 - planted[after] / 100)
    assert abs(nc[after].mean() - planted[after].mean()) <= 2 * spread.mean()
    # and it is the documented formula, recomputed here for one column
    x = test[:, :, 20, 80]
    noise = x.var(axis=1, ddof=1).mean()
    snr2 = max(x.mean(axis=1).var(ddof=1) - noise / REPEATS, 0) / noise
    assert abs(nc[20, 80] - 100 * snr2 / (snr2 + 1 / REPEATS)) < 1e-4  # float32 storage
    # no signal: the signal estimate is noise of SD ~ sigma^2/R sqrt(2/(n-1)) clipped at 0, so
    # NC = x/(1+x) <= x with x = max(0, z sqrt(2/(n-1))), whose mean is sqrt(2/(n-1)) / sqrt(2 pi)
    a = np.sqrt(2 / (N_TEST - 1))
    assert nc[~after].mean() <= 100 * a / np.sqrt(2 * np.pi) * 1.2  # +20%: mean of 1,260 columns


def test_loads_in_berg_things_eeg2_and_encodes_its_test_predictions(sim: Any, trained: Any) -> None:
    from berg_things_eeg2.layout import CHANNELS
    from berg_train.datasets.things_eeg2 import list_images

    from berg_core import BERG
    from berg_core.testing import assert_within, reference_readout

    berg_dir = trained.weights_path.parents[5]
    berg = BERG(berg_dir)
    model = berg.get_encoding_model(MODEL_ID, subject=1, device="cpu")
    paths = list_images(sim.root / "image_set" / "test_images")
    images = np.stack([np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1) for p in paths])
    out = berg.encode(model, images, show_progress=False)
    assert out.shape == (N_TEST, 4, 63, 140) and out.dtype == np.float32
    weights = in_memory(load_pickled_npy(trained.weights_path))
    features = _features(trained)[N_TRAIN:]
    for r in range(4):
        rep = f"rep-{r + 1}"
        parts = {
            "scaler_param": weights["scaler_param"],
            "pca_param": weights["pca_param"][rep],
            "reg_param": weights["reg_param"][rep],
        }
        wanted, bound = reference_readout(parts, features, (63, 140))
        # berg's encode: float32 readout of the same features (bound of berg_core.testing)
        assert_within(out[:, r], wanted, bound)
        # the training's own predictions: float64 scores, float32 weights; they differ from the
        # float64 reference only by the rounding of the training scores to the stored float32
        # components: same bound
        assert_within(trained.test_predictions[:, r], wanted, bound)
    meta = in_memory(load_pickled_npy(trained.metadata_path))
    assert meta["eeg"]["ch_names"] == list(CHANNELS)
    assert meta["encoding_models"]["correlation_single_repetitions"].shape == (4, 63, 140)
    assert meta["encoding_models"]["correlation_averaged_repetitions"].shape == (63, 140)
    assert len(meta["encoding_models"]["train_img_info"]["train_img_files"]) == N_TRAIN
    assert meta["berg_train"]["simulated"] is True
    assert trained.figure_path.stat().st_size > 10_000


def test_pca_and_ols_per_repetition_match_scikit_learn(sim: Any, trained: Any) -> None:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import StandardScaler

    features = _features(trained).astype(np.float64)
    scaler = StandardScaler().fit(features[:N_TRAIN])
    scaled = scaler.transform(features)
    pca = PCA(K, svd_solver="full").fit(scaled[:N_TRAIN])
    train_eeg = _eeg(sim.root, "train").reshape(N_TRAIN, 4, -1)
    weights = in_memory(load_pickled_npy(trained.weights_path))
    comps = pca.components_
    for r in range(4):
        stored = weights["pca_param"][f"rep-{r + 1}"]["components_"].astype(np.float64)
        # exact PCA: the same subspace and signs as scikit-learn's full SVD (float32 storage)
        assert np.allclose(np.einsum("ij,ij->i", stored, comps), 1.0, atol=1e-4)
        reg = LinearRegression().fit(pca.transform(scaled[:N_TRAIN]), train_eeg[:, r])
        wanted = reg.predict(pca.transform(scaled[N_TRAIN:]))
        got = trained.test_predictions[:, r].reshape(N_TEST, -1)
        # both are exact least squares on the same features; they differ by float32 rounding of
        # the features, components and coefficients (relative u each) amplified by the design's
        # condition number
        z = pca.transform(scaled[:N_TRAIN])
        cond = np.linalg.cond(z - z.mean(0))
        bound = 10 * cond * U * np.sqrt(K) * (np.abs(wanted) + np.abs(wanted).mean())
        assert np.all(np.abs(got - wanted) <= bound)


def test_randomized_pca_reproduces_the_reference_seeds_and_format_c(
    sim: Any, trained: Any, tmp_path: Path
) -> None:
    from berg_train.things_eeg2 import pca_seed, train_things_eeg2
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    work = tmp_path / "work"
    work.mkdir()
    for path in glob.glob(str(trained.work_dir / "features-*.h5")):
        shutil.copy(path, work)  # reuse the features: this test is about the PCA
    result = train_things_eeg2(
        sim.root, sim.root / "image_set", 1, tmp_path / "berg",
        model="alexnet_untrained", n_components=K, device="cpu", show_progress=False,
        pca="randomized", weights_format="C", work_dir=work,
    )  # fmt: skip
    features = _features(result)
    scaled = StandardScaler().fit(features[:N_TRAIN]).transform(features).astype(np.float32)
    weights = in_memory(load_pickled_npy(result.weights_path))
    for r in range(4):
        pca = PCA(K, random_state=pca_seed(1, r)).fit(scaled[:N_TRAIN])
        stored = weights["pca_param"][f"rep-{r + 1}"]  # a PCA object read as its attributes
        np.testing.assert_array_equal(stored["components_"], pca.components_.astype(np.float32))
        np.testing.assert_array_equal(stored["explained_variance_"], pca.explained_variance_)
    assert pca_seed(1, 0) == 20200220 + 1000 + 10
    with open(result.weights_path, "rb") as stream:
        assert b"sklearn.decomposition" in stream.read()  # generation C: pickled PCA objects
    from berg_core import BERG

    model = BERG(tmp_path / "berg").get_encoding_model(MODEL_ID, subject=1, device="cpu")
    assert model is not None


def test_resume_after_an_interruption_gives_identical_files(
    sim: Any, trained: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from berg_train import things_eeg2
    from berg_train.regression import OLSSolver

    work = tmp_path / "work"
    work.mkdir()
    for path in glob.glob(str(trained.work_dir / "features-*.h5")):
        shutil.copy(path, work)
    calls = {"n": 0}
    original = OLSSolver.fit

    def interrupted(self: Any, targets: np.ndarray) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:  # in repetition 3, after the PCA and two repetitions were saved
            raise KeyboardInterrupt
        return original(self, targets)

    options = dict(model="alexnet_untrained", n_components=K, device="cpu", show_progress=False,
                   work_dir=work)  # fmt: skip
    monkeypatch.setattr(OLSSolver, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        things_eeg2.train_things_eeg2(
            sim.root, sim.root / "image_set", 1, tmp_path / "b", **options
        )
    assert not list((tmp_path / "b").rglob("*.npy"))  # nothing half-written under final names
    monkeypatch.setattr(OLSSolver, "fit", original)
    resumed = things_eeg2.train_things_eeg2(
        sim.root, sim.root / "image_set", 1, tmp_path / "b", **options
    )
    assert resumed.weights_path.read_bytes() == trained.weights_path.read_bytes()
    assert resumed.metadata_path.read_bytes() == trained.metadata_path.read_bytes()
    with pytest.raises(InvalidParameterError, match="exists"):
        things_eeg2.train_things_eeg2(
            sim.root, sim.root / "image_set", 1, tmp_path / "b", **options
        )


def test_memory_budget_bounds_the_eeg_chunks(
    sim: Any, trained: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from berg_train.datasets.things_eeg2 import ThingsEEG2Data
    from berg_train.things_eeg2 import _channel_chunk, train_things_eeg2

    budget_gb = 0.02
    per_channel = _channel_chunk(N_TRAIN, N_TEST * REPEATS, 140, 1.0)
    assert per_channel == int(0.5e9 // (140 * 4 * (4 * N_TRAIN + 2 * N_TEST * REPEATS)))
    seen: dict[str, list[int]] = {"train": [], "test": []}
    read_train, read_test = ThingsEEG2Data.read_train, ThingsEEG2Data.read_test

    def spy_train(self: Any, *args: Any) -> np.ndarray:
        block = read_train(self, *args)
        seen["train"].append(block.nbytes)
        return block

    def spy_test(self: Any, *args: Any) -> np.ndarray:
        block = read_test(self, *args)
        seen["test"].append(block.nbytes)
        return block

    monkeypatch.setattr(ThingsEEG2Data, "read_train", spy_train)
    monkeypatch.setattr(ThingsEEG2Data, "read_test", spy_test)
    work = tmp_path / "work"
    work.mkdir()
    for path in glob.glob(str(trained.work_dir / "*")):
        if Path(path).is_file():
            shutil.copy(path, work)  # features and PCA: this test is about the EEG chunks
    train_things_eeg2(
        sim.root, sim.root / "image_set", 1, tmp_path / "b",
        model="alexnet_untrained", n_components=K, device="cpu", show_progress=False,
        work_dir=work, memory_gb=budget_gb,
    )  # fmt: skip
    # a chunk's training targets with their working copies (4) and its test block with its
    # average (2) stay within half the budget
    assert 4 * max(seen["train"]) + 2 * max(seen["test"]) <= budget_gb * 0.5e9
    assert len(seen["test"]) > 2  # the budget split the 63 channels into several chunks


# -- bad inputs --------------------------------------------------------------------------------


def _layout(root: Path, *, n_train: int = 2, n_test: int = 2, reps: int = 4,
            test_shape: tuple[int, ...] | None = None, dtype: str = "float32") -> Path:  # fmt: skip
    from berg_things_eeg2.layout import CHANNELS, TIMES

    folder = root / "model_training_datasets/train_dataset-things_eeg_2"
    folder.mkdir(parents=True)
    with h5py.File(folder / "eeg_sub-01_split-train.h5", "w") as h5:
        h5["eeg"] = np.zeros((n_train, reps, 63, 140), dtype=dtype)
    with h5py.File(folder / "eeg_sub-01_split-test.h5", "w") as h5:
        h5["eeg"] = np.zeros(test_shape or (n_test, 5, 63, 140), dtype="float32")
    info = {}
    for split, n, sub in (("train", n_train, "training_images"), ("test", n_test, "test_images")):
        files = [f"c_{i}.jpg" for i in range(n)]
        info[f"{split}_img_info"] = {f"{split}_img_files": files,
                                     f"{split}_img_concepts": ["00001_c"] * n}  # fmt: skip
        for name in files:
            (root / "image_set" / sub / "00001_c").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8)).save(root / "image_set" / sub / "00001_c" / name)
    meta = {"ch_names": list(CHANNELS), "times": TIMES.copy(), **info}
    np.save(folder / "metadata_subject-1.npy", meta, allow_pickle=True)
    return folder


@pytest.mark.parametrize(
    ("kwargs", "mutate", "message"),
    [
        ({}, lambda f, r: (f / "eeg_sub-01_split-test.h5").unlink(), "test file not found"),
        ({"reps": 3}, None, "has 3 repetitions"),
        ({"test_shape": (2, 5, 62, 140)}, None, r"shape \(2, 5, 62, 140\)"),
        ({"dtype": "float64"}, None, "dtype float64"),
        ({}, lambda f, r: (r / "image_set/training_images/00001_c/c_1.jpg").unlink(),
         "image count mismatch for the train split"),
        ({}, lambda f, r: (r / "image_set/test_images/00001_c/c_0.jpg").rename(
            r / "image_set/test_images/00001_c/c_9.jpg"), "image order mismatch for the test"),
        ({}, lambda f, r: np.save(f / "metadata_subject-1.npy", {"times": np.zeros(140)},
                                  allow_pickle=True), "has no key 'ch_names'"),
    ],
)  # fmt: skip
def test_bad_inputs_give_named_errors(
    tmp_path: Path, kwargs: dict[str, Any], mutate: Any, message: str
) -> None:
    from berg_train.datasets.things_eeg2 import ThingsEEG2Data

    folder = _layout(tmp_path, **kwargs)
    if mutate is not None:
        mutate(folder, tmp_path)
    with pytest.raises(InvalidParameterError, match=message) as caught:
        ThingsEEG2Data(tmp_path, tmp_path / "image_set", 1)
    assert str(tmp_path) in str(caught.value)  # names the file or folder


def test_bad_options_give_named_errors(tmp_path: Path) -> None:
    from berg_train.things_eeg2 import train_things_eeg2

    _layout(tmp_path)
    for options, message in (
        ({"pca": "incremental"}, "pca 'incremental' is not one of exact, randomized"),
        ({"weights_format": "A"}, "weights_format 'A' is not one of B, C"),
        ({"model": "resnet"}, "model 'resnet' is not a THINGS EEG2 model"),
        ({"n_components": 5}, "n_components = 5 exceeds the 2 training images"),
        ({"colour": 1}, "unknown training option"),
    ):
        with pytest.raises(InvalidParameterError, match=message):
            train_things_eeg2(tmp_path, tmp_path / "image_set", 1, tmp_path / "b", **options)
    with pytest.raises(InvalidParameterError, match=r"subject must be 1\.\.10, got 11"):
        train_things_eeg2(tmp_path, tmp_path / "image_set", 11, tmp_path / "b")


def test_vit_training_transform_is_square_crop_then_resize() -> None:
    import torch
    from berg_train.eeg2_transform import SquareCropResize, eeg2_backbone

    image = torch.zeros(1, 3, 40, 60, dtype=torch.uint8)
    image[..., 10:50] = 255  # the central 40 x 40 square is white, the sides black
    out = SquareCropResize(224)(image)
    assert out.shape == (1, 3, 224, 224)
    white = (1.0 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(out[0, :, 112, 112], white, rtol=0, atol=1e-6)
    torch.testing.assert_close(out[0, :, :, 0].mean(1), white, rtol=0, atol=1e-6)
    assert "square-crop" in eeg2_backbone("vit_b_32").identity
    assert "square-crop" not in eeg2_backbone("vit_b_32", "inference").identity
    assert "square-crop" not in eeg2_backbone("alexnet").identity  # trained with its preset
