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
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath, PureWindowsPath

from leakaudit.errors import ConfigError, LeakauditError


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
        _prove_writable(path)
    except OSError as e:
        raise ConfigError(f"--out {path} is not writable: {e.strerror or e}") from e
    return path


def _prove_writable(folder: Path) -> None:
    """Create ``folder`` (parents included) and a file in it, then remove the file: the one
    probe behind every check of an output place before the work (``OSError`` when it fails)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=folder, prefix=TMP_MARK)
    os.close(fd)
    os.unlink(probe)


# ---------------------------------------------------------------- atomic writes
#
# Every file leakaudit writes goes to a temporary file in the destination's own folder (same
# filesystem, so ``os.replace`` is atomic), is fsynced, and only then replaces the old file: a
# run that dies half-way (disk full, ``ulimit -f``, an exception) leaves the old file whole. A
# symlink where a file goes is refused, never followed: writing through it would replace a file
# the user never named (``summary.md -> ~/.bashrc``), and a dangling one would create one.

TMP_MARK = ".leakaudit-tmp-"  # every temporary name contains it (tests look for leftovers)
PathLike = str | os.PathLike[str]


class OutputError(LeakauditError):
    """An output cannot be written safely (a symlink where a file or folder goes)."""


def check_writable_file(path: PathLike, what: str = "output") -> Path:
    """Prove ``path``'s folder exists (created) and takes a new file, and that ``path`` itself is
    not a link, before any work: a bad ``--junit`` must cost a second, not a whole audit."""
    p = Path(path)
    refuse_link(p)
    try:
        _prove_writable(p.parent)
    except OSError as e:
        raise ConfigError(f"{what} {p}: folder is not writable: {e.strerror or e}") from e
    return p


def refuse_link(path: Path, root: Path | None = None) -> None:
    """Raise ``OutputError`` when ``path`` is a symlink (dangling or not) or a folder, or when a
    folder between ``root`` and ``path`` is a symlink (the write would land elsewhere)."""
    if path.is_symlink():
        raise OutputError(f"{path} is a symbolic link; leakaudit does not write through links")
    if path.is_dir():
        raise OutputError(f"{path} is a folder, not a file")
    if root is None:
        return
    if path.parent.is_relative_to(root):
        parts = path.parent.relative_to(root).parts
    elif (rr := resolved(Path(root))) is not None and path.parent.is_relative_to(rr):
        parts, root = path.parent.relative_to(rr).parts, rr  # already resolved (``inside``)
    else:
        raise OutputError(f"{path} is not inside {root}")
    folder = Path(root)
    for part in parts:
        folder = folder / part
        if folder.is_symlink():
            raise OutputError(f"{folder} is a symbolic link; leakaudit does not write into it")


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # once, at import: the umask can only be read by setting it


def _new_temp(path: Path) -> Path:
    """An empty temporary file beside ``path`` with the same suffix (PIL and numpy pick the
    format from it), with a new file's usual mode (``mkstemp`` makes it 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.stem[:40]}{TMP_MARK}"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=path.suffix)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
    finally:
        os.close(fd)
    return Path(tmp)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class OutputSet:
    """Several outputs staged as temporary files and moved into place together by ``commit``.

    ``with OutputSet() as outs:`` commits when the block ends normally; any exception
    (``BaseException`` too) removes the temporaries and leaves every old file as it was. Links
    are refused when a file is staged and again just before the first replace.
    """

    def __init__(self, root: PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else None
        self._staged: dict[Path, Path] = {}  # destination → temporary

    def path(self, dest: PathLike, root: PathLike | None = None) -> Path:
        """A temporary file to write ``dest``'s content into (for writers that need a name)."""
        d = Path(dest)
        refuse_link(d, Path(root) if root is not None else self.root)
        if d not in self._staged:
            self._staged[d] = _new_temp(d)
        return self._staged[d]

    def write(self, dest: PathLike, data: bytes | str, root: PathLike | None = None) -> Path:
        """Stage ``data`` for ``dest`` (text as UTF-8, undecodable characters as "?")."""
        tmp = self.path(dest, root)
        tmp.write_bytes(data.encode("utf-8", "replace") if isinstance(data, str) else data)
        return tmp

    def commit(self) -> list[Path]:
        """fsync every temporary, check no destination became a link, then replace them all."""
        for dest, tmp in self._staged.items():
            _fsync(tmp)
            refuse_link(dest, self.root)
        done = []
        for dest, tmp in list(self._staged.items()):
            os.replace(tmp, dest)
            del self._staged[dest]
            done.append(dest)
        return done

    def discard(self) -> None:
        """Remove every temporary not yet moved into place."""
        for tmp in self._staged.values():
            with suppress(FileNotFoundError):
                tmp.unlink()
        self._staged.clear()

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.commit()
        finally:
            self.discard()


@contextmanager
def atomic_path(path: PathLike, root: PathLike | None = None) -> Iterator[Path]:
    """Yield a temporary name beside ``path``; when the block ends normally it replaces
    ``path`` (fsynced first), on any exception it is removed and ``path`` is left alone."""
    with OutputSet(root) as outs:
        yield outs.path(path)


def write_atomic(path: PathLike, data: bytes | str, root: PathLike | None = None) -> Path:
    """Write ``data`` to ``path`` all-or-nothing; a link at ``path`` is refused (``OutputSet``)."""
    with OutputSet(root) as outs:
        outs.write(path, data)
    return Path(path)
