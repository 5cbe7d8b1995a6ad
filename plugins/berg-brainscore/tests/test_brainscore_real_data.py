"""With Brain-Score's real public benchmark files present, the real data load and fit.

Runs only when the six files are in the user's ``$BRAINIO_HOME`` (default ``~/.brainio``), read in
a subprocess with the network switched off; otherwise it is skipped, saying which files are
missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("brainscore_vision")

from berg_brainscore.benchmarks import BENCHMARKS

HERE = Path(__file__).resolve().parent
#: set by conftest.py from $BRAINIO_HOME (default ~/.brainio) before it isolates the tests
REAL_BRAINIO_HOME = Path(
    os.environ.get("BERG_BS_TESTS_REAL_BRAINIO_HOME", os.path.expanduser("~/.brainio"))
)

FILES = sorted({f for spec in BENCHMARKS.values() for f in spec.files}, key=lambda f: f.sha1)


def test_real_public_data(tmp_path: Path) -> None:
    missing = [f for f in FILES if not f.local_path(REAL_BRAINIO_HOME).is_file()]
    if missing:
        pytest.skip(
            f"{len(missing)} of Brain-Score's {len(FILES)} public files are not in "
            f"{REAL_BRAINIO_HOME}: " + ", ".join(f"{f.sha1}/{f.filename}" for f in missing)
        )
    script = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        sys.path.insert(0, {str(HERE)!r})
        import bs_fixtures
        bs_fixtures.isolate(Path({str(tmp_path)!r}))
        import os
        os.environ["BRAINIO_HOME"] = {str(REAL_BRAINIO_HOME)!r}
        bs_fixtures.block_network()
        print("RESULT", json.dumps(bs_fixtures.real_data_check(Path({str(tmp_path / "berg")!r}))))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "BERG_LOAD_PLUGINS"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=3000
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    counts = result["counts"]
    for roi, spec in BENCHMARKS.items():
        assert counts[roi]["neuroids"] == spec.n_neurons, (roi, counts[roi])
        assert counts[roi]["stimuli"] == spec.n_stimuli, (roi, counts[roi])
        assert counts[roi]["identifier"] == spec.identifier
    assert counts["V1"]["time_bins"] == [[50, 200]]
    assert result["v1_shape"] == [6, 102]
