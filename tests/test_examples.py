"""Every example script still runs: a module moved inside leakaudit/ must not silently break the
scripts the docs tell people to run (examples/lime_curve.py did, once).

Each example is run as the docs run it, ``python examples/NAME.py --help``, in its own process:
that imports everything the script imports, builds its argument parser (so a renamed option
default or a bad help string fails too) and exits 0 with a usage line. The processes start
together and each test waits for its own, so the whole file costs about one interpreter start
per core."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
TIMEOUT_S = 120  # a --help that takes this long is doing work it should not


@pytest.fixture(scope="module")
def helps() -> dict[str, subprocess.Popen]:
    env = {**os.environ, "LEAKAUDIT_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    procs = {
        p.name: subprocess.Popen(
            [sys.executable, str(p), "--help"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in EXAMPLES
    }
    yield procs
    for proc in procs.values():  # a test that failed early leaves none behind
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 5, EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_help_runs(path: Path, helps) -> None:
    text = path.read_text()
    assert 'if __name__ == "__main__":' in text, f"{path.name} runs its work on import"
    proc = helps[path.name]
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"{path.name} --help still running after {TIMEOUT_S} s")
    assert proc.returncode == 0, f"{path.name} --help exited {proc.returncode}:\n{err[-2000:]}"
    assert out.lstrip().startswith("usage:"), out[:500]
    assert "Traceback" not in err, err[-2000:]
