"""Fixtures shared across test modules (each expensive run happens once per session)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from leakaudit.cli import main


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Audits that use the default cache write into a temporary folder, not ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LEAKAUDIT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def demo_quick(tmp_path_factory):
    """`leakaudit demo --quick --seed 1` once: its output folder and printed text.

    Used by the end-to-end demo checks and the browser test of the real report."""
    out = tmp_path_factory.mktemp("demo")
    res = CliRunner().invoke(main, ["demo", "--quick", "--quiet", "--seed", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out, res.output
