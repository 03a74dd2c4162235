"""Where leakaudit may read and write: output stays inside ``--out``, checked before any work.

People audit datasets they did not write. An annotation's image name can be absolute or climb with
``../``; used as an output name it would write beside, or over, the source data. Every output
path is therefore joined with ``inside(root, name)``, which refuses anything that resolves outside
``root`` (symlinks included). ``--out`` itself is checked writable before the expensive work, so a
typo costs a second, not a whole audit.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath, PureWindowsPath

from leakaudit.errors import ConfigError


def inside(root: str | os.PathLike[str], name: str) -> Path | None:
    """``root / name`` when it stays inside ``root`` after resolving ``..`` and symlinks, else None.

    Absolute names and Windows drive or UNC names are refused outright rather than re-rooted: a
    name that points elsewhere is a data problem to report, not something to guess at.
    """
    if not name or PurePosixPath(name).is_absolute() or PureWindowsPath(name).anchor:
        return None
    target = Path(root) / name.replace("\\", "/")
    return resolved(target) if is_within(target, Path(root)) else None


def resolved(path: Path) -> Path | None:
    """``path`` with symlinks and ``..`` resolved, or None when the OS cannot resolve it
    (embedded NUL, symlink loop)."""
    try:
        return path.resolve()
    except (OSError, ValueError, RuntimeError):
        return None


def is_within(path: Path, root: Path) -> bool:
    """True when ``path`` (resolved, so links count by their target) lies under ``root``. The one
    rule behind both sides: readers skip images outside their dataset, writers refuse names
    outside ``--out``."""
    rp, rr = resolved(path), resolved(root)
    return rp is not None and rr is not None and rp.is_relative_to(rr)


def check_out_dir(out: str | os.PathLike[str]) -> Path:
    """Create ``out`` (parents included) and prove a file can be written there, or raise
    ``ConfigError`` naming the folder and the problem."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is an existing file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"--out {path} is not writable: {e.strerror or e}") from e
    return path
