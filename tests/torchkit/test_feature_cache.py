"""torchkit's feature cache and shared backbones: same numbers, never a stale or foreign hit."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from berg_core import (  # noqa: E402
    Dim,
    InvalidParameterError,
    ModelCard,
    Output,
    PluginError,
    as_stimulus,
)
from berg_core.encoder import LoadRequest  # noqa: E402
from berg_core.torchkit import (  # noqa: E402
    FeatureCache,
    ImageTransform,
    SharedBackbone,
    build_readout_model,
    shared_backbone,
)
from berg_core.torchkit import cache as cache_module  # noqa: E402
from berg_core.torchkit.cache import (  # noqa: E402
    CACHE_BYTES_ENV,
    batch_digest,
    default_cache_bytes,
    state_digest,
)

TRANSFORM = ImageTransform(size=32, resize=36, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
NODES = ("0", "2")  # the convolution (2 x 7 x 7 = 98 values) and the pooled map (2 x 2 x 2 = 8)
D, N = 106, 12
CARD = ModelCard(
    model_id="toy-cache",
    modality="fMRI",
    training_dataset="Synthetic",
    species="None",
    model_type="tiny CNN + linear map",
    subjects=(1,),
    outputs=(Output(name="responses", dims=(Dim(name="unit", size=N),)),),
    files=("weights.npy",),
)
EPS = float(np.finfo(np.float32).eps)


def backbone() -> torch.nn.Module:
    """The same tiny network in every call (seeded; the caller's state is restored)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 2, 5, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2)
        )
    return net.eval()


def readout() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "weight": rng.normal(size=(D, N)).astype(np.float32),
        "bias": rng.normal(size=N).astype(np.float32),
    }


def model(tmp_path: Path, net=None, transform=TRANSFORM, batch_size: int = 2):
    request = LoadRequest(
        model_id=CARD.model_id,
        card=CARD,
        berg_dir=tmp_path,
        device="cpu",
        options={"batch_size": batch_size},
    )
    return build_readout_model(
        request,
        backbone=backbone() if net is None else net,
        nodes=NODES,
        preprocessing=transform,
        readout=readout(),
    )


def encode(m, images: np.ndarray) -> np.ndarray:
    return m.encode(as_stimulus(images), show_progress=False)  # one output: one array


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (5, 3, 40, 44), dtype=np.uint8)


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch) -> FeatureCache:
    """A fresh process-wide cache of 1 MiB for the test."""
    fresh = FeatureCache(2**20)
    monkeypatch.setattr(cache_module, "_CACHE", fresh)
    return fresh


def expected(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Responses computed without torchkit (float64), and their float32 error bound."""
    from torchvision.transforms import functional as tvf

    x = tvf.center_crop(tvf.resize(torch.from_numpy(images), [36], antialias=True), [32])
    x = tvf.normalize(x.float() / 255, [0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    net = backbone()
    with torch.no_grad():
        conv = net[0](x)
        pooled = net[2](net[1](conv))
    features = np.hstack([conv.flatten(1).numpy(), pooled.flatten(1).numpy()]).astype(np.float64)
    w = readout()
    want = features @ w["weight"] + w["bias"]
    # Both sides use the same float32 features; the float32 product sums D terms, each rounding
    # adds at most eps * the running sum of |terms| (plus the bias addition).
    bound = (D + 1) * EPS * (np.abs(features) @ np.abs(w["weight"]) + np.abs(w["bias"]))
    return want, bound


def test_cached_responses_equal_uncached_bit_for_bit(
    cache: FeatureCache, tmp_path: Path, images: np.ndarray
) -> None:
    want, bound = expected(images)
    with model(tmp_path) as first:
        computed = encode(first, images)
    assert (cache.hits, cache.misses, len(cache)) == (0, 3, 3)  # batches of 2, 2, 1
    assert cache.nbytes == 5 * D * 4
    with model(tmp_path) as second:
        served = encode(second, images)
    assert (cache.hits, cache.misses) == (3, 3)
    cache.resize(0)  # disabled: computed again
    with model(tmp_path) as third:
        uncached = encode(third, images)
    assert (cache.hits, cache.misses, len(cache)) == (3, 3, 0)
    np.testing.assert_array_equal(served, computed)
    np.testing.assert_array_equal(uncached, computed)
    assert served.dtype == np.float32 and served.shape == (5, N)
    assert np.all(np.abs(served - want) <= bound)


def test_one_weight_element_misses(cache: FeatureCache, tmp_path: Path, images: np.ndarray) -> None:
    with model(tmp_path) as m:
        before = encode(m, images)
    net = backbone()
    with torch.no_grad():
        net[0].weight[1, 2, 3, 4] += 0.25
    with model(tmp_path, net=net) as m:
        after = encode(m, images)
    assert (cache.hits, cache.misses) == (0, 6)
    assert not np.array_equal(before, after)


def test_weights_changed_in_place_after_encoding_miss(
    cache: FeatureCache, tmp_path: Path, images: np.ndarray
) -> None:
    with model(tmp_path) as m:
        before = encode(m, images)
        with torch.no_grad():
            m.extractor.module.get_parameter("0.bias")[0] += 0.5
        after = encode(m, images)
    assert (cache.hits, cache.misses) == (0, 6)
    assert not np.array_equal(before, after)


def test_one_preprocessing_parameter_misses(
    cache: FeatureCache, tmp_path: Path, images: np.ndarray
) -> None:
    with model(tmp_path) as m:
        before = encode(m, images)
    other = ImageTransform(size=32, resize=36, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.31))
    with model(tmp_path, transform=other) as m:
        after = encode(m, images)
    assert (cache.hits, cache.misses) == (0, 6)
    assert not np.array_equal(before, after)


def test_one_pixel_misses(cache: FeatureCache, tmp_path: Path, images: np.ndarray) -> None:
    changed = images.copy()
    changed[4, 1, 20, 22] ^= 0xFF  # in the last batch (image 4), inside the centre crop
    with model(tmp_path) as m:
        before = encode(m, images)
        after = encode(m, changed)
    assert (cache.hits, cache.misses) == (2, 4)  # batches 0-1 and 2-3 served, 4 computed
    np.testing.assert_array_equal(after[:4], before[:4])
    assert not np.array_equal(after[4], before[4])


def test_same_bytes_other_dtype_or_shape_differ() -> None:
    data = np.arange(24, dtype=np.uint8).reshape(1, 3, 2, 4)
    assert batch_digest(data) != batch_digest(data.reshape(1, 3, 4, 2))
    assert batch_digest(data) != batch_digest(data.view(np.int8))
    assert batch_digest(data) != batch_digest([data[0]])
    assert batch_digest(data) == batch_digest(data.copy())


def test_unknown_preprocessing_is_never_cached(
    cache: FeatureCache, tmp_path: Path, images: np.ndarray
) -> None:
    class Opaque:  # a callable whose parameters the cache cannot know
        size = 32

        def __call__(self, batch: torch.Tensor) -> torch.Tensor:
            return TRANSFORM(batch)

    with model(tmp_path, transform=Opaque()) as m:
        encode(m, images)
        encode(m, images)
    assert (cache.hits, cache.misses, len(cache)) == (0, 0, 0)


def test_lru_bound_in_bytes() -> None:
    store = FeatureCache(3 * 10 * 4)  # three (1, 10) float32 entries
    rows = [torch.full((1, 10), float(i)) for i in range(5)]
    for i in range(3):
        store.put(bytes([i]), rows[i])
    assert store.get(bytes([0])) is not None  # 0 is now the most recently used
    store.put(bytes([3]), rows[3])  # evicts 1, the least recently used
    assert store.get(bytes([1])) is None
    assert [store.get(bytes([i])) is not None for i in (0, 2, 3)] == [True, True, True]
    assert store.nbytes == 120 and len(store) == 3
    store.put(bytes([4]), torch.zeros(1, 31))  # larger than the bound: not stored
    assert store.get(bytes([4])) is None and len(store) == 3
    stored = store.get(bytes([2]))
    assert stored is not None and stored.dtype == torch.float32
    assert torch.equal(stored, rows[2]) and stored.data_ptr() != rows[2].data_ptr()
    store.resize(40)
    assert len(store) == 1 and store.nbytes == 40
    with pytest.raises(InvalidParameterError, match=r"max_bytes = -1"):
        FeatureCache(-1)


@pytest.mark.parametrize("value", ["lots", "-5", "1.5"])
def test_bad_cache_size_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(CACHE_BYTES_ENV, value)
    with pytest.raises(InvalidParameterError, match=rf"{CACHE_BYTES_ENV} = '{value}'.*integer"):
        default_cache_bytes()


def test_cache_size_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_BYTES_ENV, "0")
    assert default_cache_bytes() == 0
    assert not FeatureCache(default_cache_bytes()).enabled
    monkeypatch.setenv(CACHE_BYTES_ENV, "12345")
    assert default_cache_bytes() == 12345
    monkeypatch.delenv(CACHE_BYTES_ENV)
    assert 0 < default_cache_bytes() <= 2**30


def test_state_digest_sees_every_tensor() -> None:
    net = backbone()
    digest = state_digest(net)
    assert state_digest(backbone()) == digest
    with torch.no_grad():
        net[0].bias[1] = torch.nextafter(net[0].bias[1], torch.tensor(1.0))  # one ulp
    assert state_digest(net) != digest


def test_shared_backbone_is_built_once_and_freed(
    cache: FeatureCache, tmp_path: Path, images: np.ndarray
) -> None:
    calls = []

    def build() -> torch.nn.Module:
        calls.append(1)
        return backbone()

    recipe = SharedBackbone(("test_feature_cache", "toy"), build)
    first, second = model(tmp_path, net=recipe), model(tmp_path, net=recipe)
    assert len(calls) == 1
    assert first.extractor.module is second.extractor.module
    np.testing.assert_array_equal(encode(first, images), encode(second, images))
    alive = weakref.ref(first.extractor.module)
    first.close()
    assert alive() is not None  # the second model still uses it
    second.close()
    gc.collect()
    assert alive() is None
    with model(tmp_path, net=recipe):
        assert len(calls) == 2  # built again once nothing held it


def test_shared_backbone_needs_weights_or_seed() -> None:
    import torchvision

    with pytest.raises(PluginError, match=r"shared_backbone\(alexnet\): give weights="):
        shared_backbone(torchvision.models.alexnet)
    seeded = shared_backbone(torchvision.models.alexnet, seed=7)
    assert seeded.key == ("seeded", "torchvision.models.alexnet.alexnet", 7)
    assert shared_backbone(torchvision.models.alexnet, seed=8).key != seeded.key
