"""``BERG.fetch`` of a THINGS EEG2 model from a 127.0.0.1 HTTP server in the bucket's layout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from berg_things_eeg2.fixture import write_model_files
from berg_things_eeg2.layout import FOLDERS, metadata_file, weights_file
from berg_things_eeg2.plugin import CARDS

from berg_core.testing_bucket import Bucket, assert_fetches_exactly, serve_bucket

UNTRAINED = list(FOLDERS)[2]


@pytest.fixture
def bucket(tmp_path: Path) -> Iterator[Bucket]:
    """A server with subjects 1 and 2 of the untrained model and subject 1 of AlexNet."""
    source = tmp_path / "bucket"
    write_model_files(source, UNTRAINED, 1)
    write_model_files(source, UNTRAINED, 2)
    write_model_files(source, list(FOLDERS)[1], 1, k=2)
    with serve_bucket(source) as served:
        yield served


def test_fetch_downloads_exactly_the_cards_files_and_the_model_loads(berg, bucket, images):
    folder = FOLDERS[UNTRAINED]
    wanted = [weights_file(folder).format(subject=1), metadata_file(folder).format(subject=1)]
    assert wanted == [spec.path.format(subject=1) for spec in CARDS[UNTRAINED].files]
    assert_fetches_exactly(berg, UNTRAINED, 1, bucket, wanted)
    with berg.get_encoding_model(UNTRAINED, subject=1, device="cpu") as model:
        responses = berg.encode(model, images[:1], show_progress=False)
    assert responses.shape == (1, 4, 63, 140) and responses.dtype == np.float32
    assert np.isfinite(responses).all()


def test_fetch_of_a_subject_the_bucket_lacks_names_the_file(berg, bucket):
    from berg_core import BergError

    with pytest.raises(BergError, match=r"weights_subject-03\.npy"):
        berg.fetch(UNTRAINED, subject=3, base_url=bucket.url, show_progress=False, retries=0)
