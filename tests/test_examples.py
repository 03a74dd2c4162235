"""Every example script still imports: a module moved inside leakaudit/ must not silently break
the scripts the docs tell people to run (examples/lime_curve.py did, once)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_imports(path: Path) -> None:
    text = path.read_text()
    assert 'if __name__ == "__main__":' in text, f"{path.name} runs its work on import"
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as a script has it: dataclasses look their module up
    try:
        spec.loader.exec_module(module)  # imports resolve; main() is not run
    finally:
        sys.modules.pop(spec.name, None)
    assert callable(getattr(module, "main", None)), f"{path.name} has no main()"
