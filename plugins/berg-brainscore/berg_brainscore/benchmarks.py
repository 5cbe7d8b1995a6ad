"""The four regions, the Brain-Score benchmark each is fitted on, and that benchmark's data files.

Pure data (no Brain-Score import), so that the plugin can describe its models, validate selections
and explain which files are missing without loading anything heavy. The sha1s and file names are
those registered by ``brainscore_vision`` 2.4 (``brainscore_vision/data/majajhong2015`` and
``brainscore_vision/data/freemanziemba2013``); a test checks them against the installed package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BENCHMARKS",
    "BRAINIO_BUCKET_URL",
    "ROIS",
    "DataFile",
    "RoiBenchmark",
    "brainio_home",
]

#: Where Brain-Score's public benchmark files are downloaded from.
BRAINIO_BUCKET_URL = "https://brainscore-storage.s3.amazonaws.com/brainio-brainscore"


@dataclass(frozen=True)
class DataFile:
    """One public Brain-Score data file, cached at ``$BRAINIO_HOME/<sha1>/<filename>``.

    Attributes
    ----------
    what : str
        What the file holds, for messages.
    sha1 : str
        Its sha1, which is also the name of its folder under ``$BRAINIO_HOME``.
    filename : str
        Its file name.
    version_id : str
        The S3 object version Brain-Score downloads (``"null"``: the only version).
    """

    what: str
    sha1: str
    filename: str
    version_id: str = "null"

    def local_path(self, home: Path) -> Path:
        """Where Brain-Score looks for this file under *home* (``$BRAINIO_HOME``)."""
        return home / self.sha1 / self.filename

    @property
    def url(self) -> str:
        """The public URL of the file."""
        query = "" if self.version_id == "null" else f"?versionId={self.version_id}"
        return f"{BRAINIO_BUCKET_URL}/{self.filename}{query}"


@dataclass(frozen=True)
class RoiBenchmark:
    """How one region is fitted.

    Attributes
    ----------
    roi : str
        ``"V1"``, ``"V2"``, ``"V4"`` or ``"IT"``.
    benchmark : str
        The ``brainscore_vision.load_benchmark`` key (``"MajajHong2015public.IT-pls"``).
    identifier : str
        The benchmark's own ``identifier`` (``"MajajHong2015.IT.public-pls"``).
    n_neurons : int
        Neuroids of the region in the public data.
    n_stimuli : int
        Images of the public stimulus set.
    dataset : str
        The ``brainscore_vision.load_dataset`` key of the assembly.
    files : tuple of DataFile
        The assembly and its stimulus set (CSV and zip).
    """

    roi: str
    benchmark: str
    identifier: str
    n_neurons: int
    n_stimuli: int
    dataset: str
    files: tuple[DataFile, ...]


_MAJAJHONG = (
    DataFile(
        "MajajHong2015 public assembly",
        "13d28ca0ce88ee550b54db3004374ae19096e9b9",
        "assy_dicarlo_MajajHong2015_public.nc",
    ),
    DataFile(
        "HVM public stimulus CSV",
        "5ca7a3da00d8e9c694a9cd725df5ba0ad6d735af",
        "stimulus_hvm-public.csv",
    ),
    DataFile(
        "HVM public images",
        "8aa44e038d7b551efa8077467622f9d48d72e473",
        "stimulus_hvm-public.zip",
    ),
)
_FREEMANZIEMBA = (
    DataFile(
        "FreemanZiemba2013 public assembly",
        "761c08f796db4e342555cdb60eef23a4f19ead43",
        "assy_movshon_FreemanZiemba2013_public.nc",
        "W2vx7jdh9utZdVumHHarXa4L1zOrA8Fd",
    ),
    DataFile(
        "FreemanZiemba2013 aperture-public stimulus CSV",
        "194c9b301a4e3e9cff02481d4c19b39331d52660",
        "stimulus_FreemanZiemba2013_aperture-public.csv",
    ),
    DataFile(
        "FreemanZiemba2013 aperture-public images",
        "3a6fec1fc28c212882d6833e267ea8654d289611",
        "stimulus_FreemanZiemba2013_aperture-public.zip",
    ),
)

#: ROI -> how it is fitted, in the order the ROIs are listed.
BENCHMARKS: dict[str, RoiBenchmark] = {
    "V1": RoiBenchmark(
        "V1",
        "FreemanZiemba2013public.V1-pls",
        "FreemanZiemba2013.V1.public-pls",
        102,
        135,
        "FreemanZiemba2013.public",
        _FREEMANZIEMBA,
    ),
    "V2": RoiBenchmark(
        "V2",
        "FreemanZiemba2013public.V2-pls",
        "FreemanZiemba2013.V2.public-pls",
        103,
        135,
        "FreemanZiemba2013.public",
        _FREEMANZIEMBA,
    ),
    "V4": RoiBenchmark(
        "V4",
        "MajajHong2015public.V4-pls",
        "MajajHong2015.V4.public-pls",
        88,
        3200,
        "MajajHong2015.public",
        _MAJAJHONG,
    ),
    "IT": RoiBenchmark(
        "IT",
        "MajajHong2015public.IT-pls",
        "MajajHong2015.IT.public-pls",
        168,
        3200,
        "MajajHong2015.public",
        _MAJAJHONG,
    ),
}

#: The valid values of ``selection["roi"]``.
ROIS: tuple[str, ...] = tuple(BENCHMARKS)


def brainio_home() -> Path:
    """``$BRAINIO_HOME`` (default ``~/.brainio``), where Brain-Score caches its data files.

    When ``brainscore_core`` is already imported and has memoized the folder, that one is returned,
    since it is the one Brain-Score will read.
    """
    import sys

    fetch = sys.modules.get("brainscore_core.supported_data_standards.brainio.fetch")
    memoized = getattr(fetch, "_local_data_path", None) if fetch is not None else None
    if memoized:
        return Path(memoized)
    return Path(os.path.expanduser(os.environ.get("BRAINIO_HOME", "~/.brainio")))
