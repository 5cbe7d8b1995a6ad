"""``BERG.fetch`` of the TVSD model from a 127.0.0.1 bucket in the reference's layout.

The object keys are written out here as the reference's model reads them
(/work/shared/reference/more-families.md §6.3), not taken from the plugin's constants. Which
names the public bucket really holds is unconfirmed (§6.3, §6.7, §8; plugins/berg-tvsd/README.md):
the last test pins what ``berg fetch`` does when the bucket holds one of the other names the
reference's scripts write.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from berg_tvsd.fixture import write_model_files
from berg_tvsd.plugin import CARD, MODEL_ID

from berg_core import BergError
from berg_core.testing_bucket import assert_fetches_exactly, serve_bucket

FOLDER = "encoding_models/modality-utah_array/train_dataset-tvsd/model-vit_b_32"


def reference_keys(monkey: str) -> list[str]:
    """The two objects the reference's model reads for *monkey* (``"N"`` or ``"F"``)."""
    return sorted(
        [
            f"{FOLDER}/encoding_models_weights/weights_monkey{monkey}.npy",
            f"{FOLDER}/metadata/metadata_monkey{monkey}.npy",
        ]
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """Bucket contents: monkey F (the family's fixture files) and monkey N (copies of them)."""
    folder = tmp_path / "bucket"
    for path in write_model_files(folder, "F"):
        path.with_name(path.name.replace("monkeyF", "monkeyN")).write_bytes(path.read_bytes())
    return folder


def test_fetch_downloads_exactly_the_reference_objects_and_the_model_loads(berg, source, images):
    assert sorted(spec.path.format(subject="F") for spec in CARD.files) == reference_keys("F")
    with serve_bucket(source) as bucket:
        assert len(bucket.objects) == 4  # monkey N's files stay in the bucket
        assert_fetches_exactly(berg, MODEL_ID, "F", bucket, reference_keys("F"))
    with berg.get_encoding_model(MODEL_ID, subject="F", device="cpu") as model:
        responses = berg.encode(model, images[:1], show_progress=False)
    assert responses.shape == (1, 1024, 300) and responses.dtype == np.float32
    assert np.isfinite(responses).all()


@pytest.mark.parametrize(
    ("other_name", "missing"),
    [
        # the newest training script's name (§6.3)
        ("weights_monkeyF_all_training_splits.npy", "weights_monkeyF.npy"),
        # the evaluation script's misnamed metadata file (§6.7)
        ("metadata_monkeymonkeyF.npy", "metadata_monkeyF.npy"),
    ],
)
def test_fetch_names_the_object_the_bucket_lacks(berg, source, other_name, missing):
    [path] = source.rglob(missing)
    path.rename(path.with_name(other_name))
    with serve_bucket(source) as bucket, pytest.raises(BergError) as error:
        berg.fetch(MODEL_ID, subject="F", base_url=bucket.url, show_progress=False, retries=0)
    assert f"{missing}" in str(error.value)
    assert other_name not in bucket.downloaded()
