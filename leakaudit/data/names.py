"""Class names and file names as they come from disk or annotation files, made safe once.

* A name that is not valid UTF-8 (a folder ``b'caf\\xe9'`` arrives via ``os.listdir`` as a
  lone surrogate; COCO JSON can hold ``"\\udc80"``) becomes a display string with ``\\xNN``
  escapes where it is read (``display_name``); the file path used to open the image keeps the
  raw name. Every writer (JSON, HTML, Markdown, Arrow tables) then sees plain Unicode.
* A class name that is or holds a path separator (``/``, ``\\``, NUL, ``.``, ``..``) becomes a
  different folder tree when written back as an ImageFolder (``inject``, ``crops``), so a
  2-class copy reads back as 1 class: ``check_class_names`` refuses it where a copy or a model
  is made; audits list it as a data problem (``name_problems``).
* Names equal up to Unicode normalisation (NFC ``Café`` vs NFD ``Cafe\\u0301``) or letter case
  are almost always one class spelled twice; they are kept apart (merging would guess) but listed.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence

from leakaudit.data.samples import DataProblem, Dataset
from leakaudit.errors import DatasetError

_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4})")


def display_name(raw: str) -> str:
    """``raw`` with undecodable bytes / lone surrogates as ``\\xNN`` (``\\udNNN``) escapes."""
    raw = str(raw)
    try:
        raw.encode("utf-8")
        return raw
    except UnicodeEncodeError:
        pass
    try:  # surrogates from os.listdir / surrogateescape: show the original byte
        return raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte (JSON "\ud800")
        return raw.encode("utf-8", "backslashreplace").decode("utf-8")


def shown(raw: str, what: str, item: str, problems: list[DataProblem]) -> str:
    """``display_name(raw)``; when it had to change, one counted problem naming ``what``."""
    name = display_name(raw)
    if name != raw:
        problems.append(
            DataProblem(item, f"{what} is not valid UTF-8, shown as {name}", "shown escaped")
        )
    return name


def unsafe_reason(name: str) -> str | None:
    """Why ``name`` cannot be a class folder name (None when it can)."""
    if name in (".", ".."):
        return f"is {name!r}"
    for ch, what in (("\0", "NUL"), ("/", "'/'"), ("\\", "'\\'")):
        if ch in name:
            hint = ""
            if ch == "\\" and _ESCAPE.search(name):
                hint = " (a name that is not valid UTF-8 is shown with \\x escapes)"
            return f"contains a path separator ({what}){hint}"
    return None


def check_class_names(names: Iterable[str], what: str) -> None:
    """``DatasetError`` naming every class name that would become a path (``unsafe_reason``):
    written back as folders it would split or merge classes."""
    bad = [(n, r) for n in names if (r := unsafe_reason(n)) is not None]
    if bad:
        listed = "; ".join(f"class {n!r} {r}" for n, r in bad[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise DatasetError(
            f"{what} refuses class names that are or contain a path separator: {listed}{more}; "
            "rename those classes"
        )


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def name_problems(class_names: Sequence[str]) -> list[DataProblem]:
    """Counted problems for unsafe names and for names equal up to normalisation or case."""
    out = []
    for n in class_names:
        reason = unsafe_reason(n)
        if reason is not None:
            out.append(DataProblem(n, f"class name {n!r} {reason}", "kept"))
    groups: dict[str, list[str]] = defaultdict(list)
    for n in class_names:
        groups[_fold(n)].append(n)
    for group in groups.values():
        if len(group) < 2:
            continue
        if len({unicodedata.normalize("NFC", n) for n in group}) == 1:
            how = "Unicode normalisation (NFC/NFD)"
        elif len({n.casefold() for n in group}) == 1:
            how = "letter case"
        else:
            how = "Unicode normalisation and letter case"
        spelled = ", ".join(f"{n!r}" + (f" ({n!a})" if not n.isascii() else "") for n in group)
        out.append(
            DataProblem(
                " / ".join(group),
                f"class names {spelled} differ only in {how}; kept as separate classes",
                "kept",
            )
        )
    return out


def classes_without_images(data: Dataset) -> DataProblem | None:
    """The problem for a class list where fewer than two classes have images (None when fine)."""
    counts = data.counts()
    present = [n for n, c in counts.items() if c]
    if len(present) >= 2 or len(counts) < 2:
        return None
    return DataProblem(
        "classes",
        f"only {len(present)} of {len(counts)} classes has images "
        f"({', '.join(present) or 'none'}); the others cannot be compared",
        "kept",
    )


def check_audit_classes(data: Dataset, explicit: bool) -> None:
    """A classifier audit compares and swaps between classes: with images in fewer than two it
    is a ``DatasetError``, unless the class list was given (``--classes``, the model card),
    which says the model has more classes: then ``classes_without_images`` is recorded."""
    counts = data.counts()
    present = [n for n, c in counts.items() if c]
    if len(present) >= 2:
        return
    if explicit and len(counts) >= 2:
        problem = classes_without_images(data)
        if problem is not None and problem not in data.problems:
            data.problems.append(problem)
        return
    raise DatasetError(
        f"the data has images in {len(present)} class(es) ({', '.join(present) or 'none'}); "
        "an audit needs at least two classes to compare. If the model has more classes, list "
        "them in its output order with --classes"
    )
