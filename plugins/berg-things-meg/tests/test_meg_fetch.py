"""``BERG.fetch`` of the THINGS MEG1 model from a 127.0.0.1 bucket in the reference's layout.

The object keys are written out here as the reference's CI downloads them
(/work/shared/reference/more-families.md §1.1, §5.3), not taken from the plugin's constants.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from berg_things_meg.fixture import write_model_files
from berg_things_meg.plugin import CARD, MODEL_ID

from berg_core import BergError
from berg_core.testing_bucket import assert_fetches_exactly, serve_bucket

FOLDER = "encoding_models/modality-meg/train_dataset-things_meg_1/model-vit_b_32"


def reference_keys(subject: int) -> list[str]:
    """The two objects the reference reads for *subject* (token ``P{subject}``)."""
    return sorted(
        [
            f"{FOLDER}/encoding_models_weights/weights_P{subject}_all_training_splits.npy",
            f"{FOLDER}/metadata/metadata_P{subject}.npy",
        ]
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """Bucket contents: subject 1 (the family's fixture files) and subject 2 (copies of them)."""
    folder = tmp_path / "bucket"
    for path in write_model_files(folder, 1):
        path.with_name(path.name.replace("P1", "P2")).write_bytes(path.read_bytes())
    return folder


def test_fetch_downloads_exactly_the_reference_objects_and_the_model_loads(berg, source, images):
    assert sorted(spec.path.format(subject=1) for spec in CARD.files) == reference_keys(1)
    with serve_bucket(source) as bucket:
        assert len(bucket.objects) == 4  # subject 2's files stay in the bucket
        assert_fetches_exactly(berg, MODEL_ID, 1, bucket, reference_keys(1))
    with berg.get_encoding_model(MODEL_ID, subject=1, device="cpu") as model:
        responses = berg.encode(model, images[:1], show_progress=False)
    assert responses.shape == (1, 271, 281) and responses.dtype == np.float32
    assert np.isfinite(responses).all()


def test_fetch_of_a_subject_the_bucket_lacks_names_the_object(berg, source):
    with serve_bucket(source) as bucket, pytest.raises(BergError) as error:
        berg.fetch(MODEL_ID, subject=3, base_url=bucket.url, show_progress=False, retries=0)
    assert "weights_P3_all_training_splits.npy" in str(error.value)
    assert not list(berg.berg_dir.rglob("*.npy"))
