"""`pip install .` gives a working tool: the wheel holds every subpackage and template, and its
`leakaudit` command runs in a fresh virtual environment (issue 16).

The fresh venv gets only the wheel; the heavy dependencies (torch, …) come from the project's own
`.venv` through a `.pth` file, so the test checks *our* packaging without downloading torch.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _sh(*args: str | Path, cwd: Path | None = None) -> str:
    res = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd)
    assert res.returncode == 0, f"{args}: {res.stdout}\n{res.stderr}"
    return res.stdout


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("pkg")
    src = tmp / "src"  # a clean copy: no stale build/ folder can leak into the wheel
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("leakaudit", "reports_templates"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    _sh(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "-w", tmp / "dist", src)  # fmt: skip
    (wheel,) = (tmp / "dist").glob("leakaudit-*.whl")
    venv = tmp / "venv"
    _sh(sys.executable, "-m", "venv", "--without-pip", venv)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _sh(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--quiet",
        "--no-deps", "--no-index", wheel)  # fmt: skip
    return venv


def test_every_subpackage_is_declared() -> None:
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ])  # fmt: skip
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "leakaudit").rglob("__init__.py")
    }
    assert on_disk <= declared, f"add to [tool.setuptools] packages: {sorted(on_disk - declared)}"


def test_installed_wheel_runs_outside_the_repo(fresh_venv, tmp_path) -> None:
    py = fresh_venv / "bin" / "python"
    where = _sh(py, "-c", "import leakaudit; print(leakaudit.__file__)", cwd=tmp_path)
    assert str(ROOT) not in where and str(fresh_venv) in where  # the wheel, not the checkout
    out = _sh(fresh_venv / "bin" / "leakaudit", "audit", "--help", cwd=tmp_path)
    assert "--preprocess" in out and "--data" in out
    code = (
        "import importlib, pkgutil, leakaudit\n"
        "mods = [m.name for m in pkgutil.walk_packages(leakaudit.__path__, 'leakaudit.')]\n"
        "[importlib.import_module(m) for m in mods]\n"
        "from importlib.resources import files\n"
        "t = [p.name for p in files('leakaudit.reports_templates').iterdir()]\n"
        "assert any(n.endswith('.j2') for n in t), t\n"
        "print(len(mods))\n"
    )
    assert int(_sh(py, "-c", code, cwd=tmp_path)) > 20
