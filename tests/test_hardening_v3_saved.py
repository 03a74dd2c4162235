"""Saved results are untrusted input: checked before use, and every string made inert for
summary.md (GitHub), report.html, junit.xml and the terminal (issue "Hardening v3")."""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import HOSTILE_MODEL, two_model_result

from leakaudit.report import render_outputs, write_report
from leakaudit.report.bundle import ReportError, _write_npz, load_bundle, manifest_of
from leakaudit.report.markdown import MAX_CHARS, render_markdown
from leakaudit.report.outputs import load_saved
from leakaudit.textsafe import md_text, terminal_text


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("saved")
    write_report(two_model_result(), out, command="leakaudit compare --names clean,x")
    return out


@pytest.fixture
def d(saved_dir, tmp_path) -> Path:
    """A private copy of the result folder, to hand-edit."""
    return Path(shutil.copytree(saved_dir, tmp_path / "res"))


def _edit_summary(d: Path, fn) -> None:
    s = json.loads((d / "summary.json").read_text())
    fn(s)
    (d / "summary.json").write_text(json.dumps(s))


def _arrays(d: Path) -> dict[str, np.ndarray]:
    with np.load(d / "results.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _resave(d: Path, fn, manifest: bool = True) -> None:
    """Edit the arrays and write them back; the manifest is rewritten to match unless told."""
    arrays = _arrays(d)
    fn(arrays)
    if manifest:
        arrays.pop("manifest", None)
        arrays["manifest"] = np.array(json.dumps(manifest_of(arrays), sort_keys=True))
    (d / "results.npz").unlink()
    _write_npz(d / "results.npz", arrays)


def _meta(fn):
    def edit(a):
        meta = json.loads(str(a["meta"]))
        fn(meta)
        a["meta"] = np.array(json.dumps(meta))

    return edit


def _ghost(m: dict) -> None:
    """The second saved model renamed in the npz only: it is not in summary.json."""
    m["model_names"][1] = "ghost"
    for g in m["galleries"]:
        if g["model"] == HOSTILE_MODEL:
            g["model"] = "ghost"


def _report(d: Path, capsys) -> tuple[int, str]:
    from leakaudit.cli import run

    with pytest.raises(SystemExit) as exc:
        run(["report", str(d), "--format", "html,md,junit"])
    return exc.value.code, capsys.readouterr().err


def _refused(d: Path, capsys, *words: str) -> None:
    code, err = _report(d, capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and "unexpected" not in err, err
    for w in words:
        assert w in err, (w, err)


# ---------------------------------------------------------------- 1. summary.md strings


def test_hand_edited_summary_strings_never_reach_summary_md_raw(d):
    s, data = load_saved(d)
    c = s["models"]["clean"]["conditions"][1]  # a WARN row: in the table
    c["status"] = "WARN"
    c["value"] = "<img src=x onerror=alert(1)> | [x](javascript:alert(1))"
    c["warn"] = "<script>alert(2)</script>"
    s["n_eval"] = "@octocat #12"
    s["tell_area_fraction"] = "![i](http://e/x.png)"
    md = render_markdown(s, data)  # the renderer itself, past the checks
    assert "<img" not in md and "<script" not in md and "](javascript" not in md
    assert "![i]" not in md
    assert "@octocat" not in md and "#12" not in md
    row = next(r for r in md.splitlines() if "tell swap" in r and "clean" in r)
    assert len(re.findall(r"(?<!\\)\|", row)) == 7, row


def test_hand_edited_summary_value_is_refused_by_report(d, capsys):
    def edit(s):
        s["models"]["clean"]["conditions"][1]["value"] = "<img src=x onerror=alert(1)>"

    _edit_summary(d, edit)
    (d / "summary.md").unlink()
    _refused(d, capsys, "summary.json", "models.clean.conditions[1].value",
             "expected a number")  # fmt: skip
    assert not (d / "summary.md").exists()


# ---------------------------------------------------------------- 2. size before inflating


def _no_inflating(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("array data was inflated before the size check")

    monkeypatch.setattr(np.lib.format, "read_array", refuse)
    monkeypatch.setattr(np, "load", refuse)


def test_entry_over_the_cap_is_refused_before_decompressing(d, monkeypatch):
    def bomb(a):  # 64 MB of zeros: ~64 KB stored
        a["m0_x0_maps"] = np.zeros((16, 1024, 1024), np.float32)

    _resave(d, bomb)
    assert (d / "results.npz").stat().st_size < 2e6
    monkeypatch.setenv("LEAKAUDIT_MAX_RESULTS_MB", "16")
    _no_inflating(monkeypatch)
    with pytest.raises(ReportError) as e:
        load_bundle(d / "results.npz")
    msg = str(e.value)
    assert "results.npz" in msg and "m0_x0_maps" in msg and "67108" in msg
    assert "LEAKAUDIT_MAX_RESULTS_MB" in msg and "16 MB" in msg


def test_header_declaring_2_5_gb_is_refused_at_the_default_cap(d, monkeypatch):
    """A 2.5 GB array declared in a tiny file: refused from its header, nothing allocated."""
    buf = io.BytesIO()
    header = {"descr": "<f2", "fortran_order": False, "shape": (1_250_000_000,)}
    np.lib.format.write_array_header_1_0(buf, header)
    buf.write(b"\0" * 64)
    path = d / "results.npz"
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("m0_x0_maps2.npy", buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    monkeypatch.delenv("LEAKAUDIT_MAX_RESULTS_MB", raising=False)
    _no_inflating(monkeypatch)
    with pytest.raises(ReportError, match=r"m0_x0_maps2.*2500000000 bytes.*2048 MB.*"
                                          r"LEAKAUDIT_MAX_RESULTS_MB"):  # fmt: skip
        load_bundle(path)


def test_out_of_memory_in_report_names_no_audit_options(d, capsys, monkeypatch):
    import leakaudit.report.write as write

    def oom(*a, **k):
        raise MemoryError

    monkeypatch.setattr(write, "load_saved", oom)
    code, err = _report(d, capsys)
    assert code == 2 and "--limit" not in err and "--size" not in err
    assert "LEAKAUDIT_MAX_RESULTS_MB" in err


# ---------------------------------------------------------------- 3. manifest


def test_save_bundle_writes_a_manifest_of_every_entry(d):
    a = _arrays(d)
    manifest = json.loads(str(a.pop("manifest")))
    assert set(manifest) == set(a)
    for k, v in a.items():
        assert manifest[k] == {"shape": list(v.shape), "dtype": v.dtype.str}


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda a: a.pop("m0_x0_maps"), ["m0_x0_maps", "missing"]),
        (lambda a: a.pop("m1_confidence"), ["m1_confidence", "missing"]),
        (lambda a: a.update(extra=np.zeros(3)), ["extra", "not in the manifest"]),
        (lambda a: a.update(m0_pred=a["m0_pred"][:-1]), ["m0_pred", "manifest says"]),
        (lambda a: a.update(m0_pred=a["m0_pred"].astype(np.int32)), ["m0_pred", "<i4"]),
        (lambda a: a.pop("manifest"), ["manifest", "missing", "re-run"]),
    ],
)
def test_entries_that_do_not_match_the_manifest_are_refused(d, capsys, edit, words):
    _resave(d, edit, manifest=False)
    _refused(d, capsys, "results.npz", *words)


# ---------------------------------------------------------------- 4. validation


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda s: s["models"]["clean"]["conditions"][2].update(value="x"),
         ['models.clean.conditions[2].value: expected a number', 'got "x"']),
        (lambda s: s["models"]["clean"]["conditions"][0].update(status="OK"),
         ["conditions[0].status"]),
        (lambda s: s.update(schema_version=99), ["schema_version", "99"]),
        (lambda s: s["models"].update(clean=[]), ["models.clean", "an object"]),
        (lambda s: s["models"]["clean"].update(verdict=3), ["models.clean.verdict"]),
        (lambda s: s["models"]["clean"]["suspected_tells"][0].update(classes=["nope"]),
         ["suspected_tells[0].classes[0]"]),
        (lambda s: s["models"]["clean"]["suspected_tells"][0].update(box=[1, 2]),
         ["suspected_tells[0].box"]),
        (lambda s: s.update(class_names=["a", 3]), ["class_names[1]"]),
        (lambda s: s["models"]["clean"]["methods"]["lime"].update(tell_mass="0.5"),
         ["models.clean.methods.lime.tell_mass"]),
        (lambda s: s["models"]["clean"]["sanity"]["lime"].update(layers=[{"layer": 1}]),
         ["sanity.lime.layers[0].layer"]),
        (lambda s: s.update(data_problems=[["x"]]), ["data_problems[0]"]),
    ],
)  # fmt: skip
def test_malformed_summary_is_one_error_naming_file_and_field(d, capsys, edit, words):
    _edit_summary(d, edit)
    _refused(d, capsys, "summary.json", *words)


def test_nan_in_summary_is_refused(d, capsys):
    text = (d / "summary.json").read_text().replace('"seed": 0', '"seed": NaN')
    (d / "summary.json").write_text(text)
    _refused(d, capsys, "summary.json", "NaN")


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda a: a.update(labels=np.full_like(a["labels"], 99)), ["labels", "99", "4 classes"]),
        (lambda a: a.update(labels=-a["labels"] - 1), ["labels", "negative"]),
        (lambda a: a.update(m0_pred=np.full_like(a["m0_pred"], 7)), ["pred", "class index"]),
        (lambda a: a.update(m0_confidence=a["m0_confidence"][:-1]), ["confidence", "15"]),
        (lambda a: a.update(m1_x1_maps=a["m1_x1_maps"][:3]), ["maps", "3 maps for 16 images"]),
        (lambda a: a.update(m0_x0_maps=a["m0_x0_maps"][:, 0]), ["m0_x0_maps".replace("m0_x0_",
                                                                 "clean.saliency."), "shape"]),
        (lambda a: a.update(ids=a["ids"][:4]), ["entry ids", "16", "got 4"]),
        (lambda a: a.update(thumb_tells=a["thumb_tells"][:, :4]), ["thumb_tells"]),
        (_meta(lambda m: m.update(thumb_index=[999] * len(m["thumb_index"]))), ["thumb_index"]),
        (_meta(lambda m: m["galleries"][0]["items"][0].update(index=10**6)),
         ["galleries[0].items[0].index"]),
        (_meta(lambda m: m["galleries"][0].update(kind="evil")), ["galleries[0].kind"]),
        (_meta(_ghost), ["meta.model_names", "ghost", "not in summary.json"]),
        (_meta(lambda m: m.update(notes="x")), ["meta", "notes"]),
        (lambda a: a.update(meta=np.array("{not json")), ["entry meta", "not valid JSON"]),
    ],
)  # fmt: skip
def test_inconsistent_results_npz_is_one_error_naming_file_and_entry(d, capsys, edit, words):
    _resave(d, edit)
    _refused(d, capsys, "results.npz", *words)


def test_untouched_results_still_rerender_byte_identical(d, tmp_path):
    render_outputs(d, tmp_path, ("html", "md", "junit"))
    for name in ("report.html", "summary.md"):
        assert (tmp_path / name).read_bytes() == (d / name).read_bytes(), name


# ---------------------------------------------------------------- 5. summary.md size


def test_summary_md_stays_under_githubs_comment_limit(d):
    def edit(s):
        for m in s["models"].values():
            m["conditions"] = [
                {"name": f"c{i} " + "<x>&" * 500_000 if i == 0 else f"c{i} " + "y" * 5000,
                 "kind": "k", "evidence": "e", "value": 0.9, "warn": 0.1, "fail": 0.2,
                 "status": "FAIL"}
                for i in range(300)
            ]  # fmt: skip
        s["title"] = "@t " * 3_000_000

    _edit_summary(d, edit)
    _resave(d, _meta(lambda m: m.update(command="leakaudit audit " + "`x` " * 500_000)))
    render_outputs(d, d, ("md",))
    md = (d / "summary.md").read_text()
    assert len(md) < MAX_CHARS, len(md)
    assert "598 more rows left out" in md or "rows left out" in md
    assert "summary.json" in md and "report.html" in md
    assert "characters left out" in md  # the command, shortened


# ---------------------------------------------------------------- 6. text made inert


def test_md_text_neutralises_markdown_mentions_links_and_controls():
    out = md_text("@octocat #12 https://e.x www.e.x a@b.co [x](javascript:alert(1)) \x1b[31m`*`")
    for raw in ("@octocat", "#12", "https:", "www.", "@b", "javascript:", "\x1b", "`", "[x]"):
        assert raw not in out, raw
    assert "\\\\x1b" in out  # shown as text: \x1b
    assert md_text("a\nb\r\nc") == "a b c"


def test_terminal_text_shows_controls_and_surrogates_as_escapes():
    assert terminal_text("a\x1b[2J\rb\bc\x9bd\udcffe\n") == "a\\x1b[2J\\rb\\x08c\\x9bd\\xffe\\n"


def test_cli_echo_helpers_escape_data(capsys):
    from leakaudit.auditing.verdict import Condition
    from leakaudit.cli import _echo_conditions, _echo_warnings

    _echo_conditions([Condition("lime: \x1b[31mred\r", "tell_mass_excess", "attribution",
                                0.9, 0.15, 0.3)])  # fmt: skip
    _echo_warnings(["Warning: file bad\x1b]0;pwned\x07.png\udcff"])
    out = capsys.readouterr()
    for text in (out.out, out.err):
        assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    assert "\\x1b[31mred" in out.out and "\\xff" in out.err


def test_cli_error_with_a_hostile_folder_name_is_escaped(tmp_path, capsys):
    bad = tmp_path / "evil\x1b[2Jdir"
    bad.mkdir()
    code, err = _report(bad, capsys)
    assert code == 2 and "\x1b" not in err and "evil\\x1b[2Jdir" in err


HOSTILE = [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "[x](javascript:alert(1))",
    "![i](http://e/x.png)", "@octocat", "#12", "https://evil.example", "www.evil.example",
    "a|b", "line\nbreak", "\x1b[31mred", "`tick`", "*bold*", "me@evil.example",
    "<a href=//e>x</a>", "~~gone~~", "_u_", "GH-12", "<details>", "&lt;b&gt;", "x\udcff.png",
]  # fmt: skip


def _renamed(src: Path, dst: Path, words: list[str]) -> Path:
    """The result folder with every data string (title, classes, models, conditions, the
    command, the version) replaced by ``words`` (the same strings in the same places)."""
    shutil.copytree(src, dst)
    names = {
        "title": words[0] + words[1],
        "version": words[2] + words[3],
        "classes": [words[4] + words[5], words[6] + words[7], words[8] + words[9],
                    words[10] + words[11]],
        "models": {"clean": words[12] + words[13], HOSTILE_MODEL: words[14] + words[15]},
        "cond": words[16] + words[17] + words[18] + words[19] + words[20],
    }  # fmt: skip
    mapping = dict(zip(two_model_result().class_names, names["classes"], strict=True))

    def walk(v):
        if isinstance(v, dict):
            return {mapping.get(k, k): walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return mapping.get(v, v) if isinstance(v, str) else v

    def edit(s):
        s.update(walk(s))
        s["models"] = {names["models"][k]: v for k, v in s["models"].items()}
        s["title"], s["leakaudit_version"] = names["title"], names["version"]
        for m in s["models"].values():
            for c in m["conditions"]:
                c["name"] = c["name"][:3] + names["cond"]

    _edit_summary(dst, edit)

    def meta(m):
        rename = names["models"]
        m["model_names"] = [rename[x] for x in m["model_names"]]
        m["galleries"] = [{**g, "model": rename.get(g["model"], g["model"])}
                          for g in m["galleries"]]  # fmt: skip
        m["command"] = "leakaudit " + " ".join(words)

    _resave(dst, _meta(meta))
    return dst


def _structure(html: str) -> list[str]:
    """Every tag with its attributes, and every link target, in order."""
    return re.findall(r"<[^>]*>", html)


@pytest.mark.parametrize("unsafe", [False, True])
def test_summary_md_renders_on_github_with_only_our_own_markup(saved_dir, tmp_path, unsafe):
    cmarkgfm = pytest.importorskip("cmarkgfm")
    opts = cmarkgfm.Options.CMARK_OPT_UNSAFE if unsafe else 0
    html = {}
    for kind, words in (("hostile", HOSTILE), ("plain", [f"w{i}" for i in range(len(HOSTILE))])):
        d = _renamed(saved_dir, tmp_path / kind, words)
        md = render_markdown(*load_saved(d))
        html[kind] = cmarkgfm.github_flavored_markdown_to_html(md, options=opts)
    assert _structure(html["hostile"]) == _structure(html["plain"])
    text = re.sub(r"(?s)<pre>.*?</pre>", "", html["hostile"])  # code: never linked on GitHub
    for raw in ("@octocat", "#12", "GH-12", "https://evil", "www.evil", "\x1b", "@evil",
                "javascript:"):  # fmt: skip
        assert raw not in text, raw  # mentions, refs and autolinks happen on this text
    assert "octocat" in text and "evil.example" in text  # shown, not dropped


def test_html_and_junit_show_control_characters_as_escapes(saved_dir, tmp_path):
    d = _renamed(saved_dir, tmp_path / "h", HOSTILE)
    render_outputs(d, tmp_path / "out", ("html", "junit"))
    html = (tmp_path / "out" / "report.html").read_text()
    assert "\x1b" not in html and "\\x1b[31mred" in html
    assert "<script>alert" not in html and "<img src=x" not in html
    import xml.etree.ElementTree as ET

    root = ET.parse(tmp_path / "out" / "junit.xml").getroot()  # well-formed
    assert root.get("tests") == "8"
