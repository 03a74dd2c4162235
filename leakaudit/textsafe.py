"""Data strings made inert for each place they are shown: markdown, HTML, the terminal.

Class names, file names, config values and notes come from data (or a hand-edited results
folder), so none of them may format a PR comment, ping someone, link anywhere or move the
terminal's cursor. Each output has one function here, used for every data-derived string.
"""

from __future__ import annotations

import re
from typing import Any

# C0 and C1 controls, DEL, and the bidi overrides that reorder what a reader sees
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
ZWSP = "\u200b"  # zero-width space: breaks @mentions, #refs and autolinks, invisible

_MD_SPECIAL = re.compile(r"([\\*_\[\]()~|#!])")
_MD_ENTITY = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "`": "&#96;"}
# what GitHub would turn into a link or a reference: scheme:, www., @name, #12, GH-12
_LINKISH = re.compile(
    r"(?i)(?:(https?|ftp|javascript|vbscript|data|mailto|xmpp|file|irc)(?=:)"
    r"|(www)(?=\.)|(@)|(#|gh-)(?=\d))"
)


def _escape_char(ch: str) -> str:
    """``\\xNN`` / ``\\uNNNN`` for a control character; a lone surrogate from a non-UTF-8 file
    name (surrogateescape ``\\udcNN``) shows the byte it stands for, ``\\xNN``."""
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    if ch in _NAMED:
        return _NAMED[ch]
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible_controls(text: str, keep: str = "") -> str:
    """Control characters (except those in ``keep``) and lone surrogates as visible escapes."""

    def sub(m: re.Match[str]) -> str:
        return m.group(0) if m.group(0) in keep else _escape_char(m.group(0))

    return _SURROGATE.sub(sub, _CONTROL.sub(sub, text))


def _shorten(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + "…"


def md_text(value: Any, limit: int | None = None) -> str:
    """Inline GitHub-flavoured markdown text that renders as exactly ``value`` (one line).

    Line breaks become spaces and control characters ``\\xNN``; HTML metacharacters and
    backticks become entities (GitHub renders raw HTML; no code spans); every markdown
    punctuation character is backslash-escaped; ``@name``, ``#12``, ``scheme:`` and ``www.``
    get a zero-width space, because GitHub links and mentions *after* parsing, on the text.
    ``limit`` shortens long data (characters of ``value``) with "…"."""
    text = _shorten(" ".join(str(value).split()), limit)  # line breaks, tabs → one space
    text = _MD_SPECIAL.sub(r"\\\1", visible_controls(text))
    text = _LINKISH.sub(lambda m: m.group(0) + ZWSP, text)
    return re.sub(r"[&<>`]", lambda m: _MD_ENTITY[m.group(0)], text)


def md_code(value: Any) -> str:
    """Text for inside a fenced code block: nothing is rendered there, but control
    characters would still reach a reader's terminal or editor."""
    return visible_controls(str(value), keep="\n\t")


def terminal_text(value: Any) -> str:
    """One line for the terminal: ESC, ``\\r``, ``\\b``, C1 controls, newlines and lone
    surrogates as escapes (``\\x1b``), so data cannot recolour, rewrite or hide a line."""
    return visible_controls(str(value))


def html_text(value: Any) -> str:
    """Text for an autoescaped HTML template: control characters (not newlines or tabs) and
    lone surrogates as escapes; ``<>&"'`` are left to the template's autoescape."""
    return visible_controls(str(value), keep="\n\t\r")
