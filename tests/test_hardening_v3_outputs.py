"""Hardening v3: every output is written atomically and never through a symlink.

A result folder's files may be links planted by someone else (``summary.md -> ~/.bashrc``): a
write must refuse them, one line and exit 2, and leave the link's target as it was. A run that
fails half-way (an exception while rendering, a full disk) must leave the previous complete set
of outputs byte for byte, with no temporary files behind. A bad ``--junit`` fails before the work.
"""

from __future__ import annotations

import errno
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from report_fixtures import big_result, two_model_result

from leakaudit.data.images import save_png
from leakaudit.paths import TMP_MARK, OutputError, OutputSet, atomic_path, write_atomic
from leakaudit.report import render_outputs, write_report

VICTIM = b"precious: not leakaudit's to overwrite\n"
ALL_OUTPUTS = ("summary.json", "results.npz", "run_info.json", "report.html", "summary.md")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pristine")
    write_report(two_model_result(), out, junit_path=out / "junit.xml")
    return out


@pytest.fixture
def result_dir(pristine, tmp_path) -> Path:
    """A private copy of a complete result folder (report.html, summary.*, junit.xml, ...)."""
    return Path(shutil.copytree(pristine, tmp_path / "result"))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and not p.is_symlink()}


def _temps(*folders: Path) -> list[Path]:
    return [p for f in folders for p in f.rglob("*") if TMP_MARK in p.name]


def _link(at: Path, victim: Path) -> None:
    at.unlink(missing_ok=True)
    at.symlink_to(victim)


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    from leakaudit.cli import run

    with pytest.raises(SystemExit) as exc:
        run(argv)
    return exc.value.code, capsys.readouterr().err


def _one_line_refusal(code: int, err: str) -> None:
    assert code == 2, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert "link" in err or "not writable" in err, err


# ---------------------------------------------------------------- links: leakaudit report


@pytest.mark.parametrize("name", ["report.html", "summary.md", "junit.xml"])
def test_report_refuses_a_link_at_an_output(result_dir, tmp_path, capsys, name):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM)
    _link(result_dir / name, victim)
    before = _snapshot(result_dir)
    code, err = _cli(["report", str(result_dir), "--format", "html,md,junit"], capsys)
    _one_line_refusal(code, err)
    assert victim.read_bytes() == VICTIM
    assert (result_dir / name).is_symlink()
    assert _snapshot(result_dir) == before  # refused before anything was replaced
    assert not _temps(result_dir, tmp_path)


def test_report_dangling_link_does_not_create_its_target(result_dir, tmp_path, capsys):
    target = tmp_path / "elsewhere" / "created.md"
    target.parent.mkdir()
    _link(result_dir / "summary.md", target)
    code, err = _cli(["report", str(result_dir)], capsys)
    _one_line_refusal(code, err)
    assert not target.exists()
    assert not _temps(result_dir, tmp_path)


def test_report_with_linked_summary_json_renders_nothing_through_links(
    result_dir, tmp_path, capsys
):
    """summary.json is only read by ``report``; a link there is read, but a link at an output
    in the same folder is still refused."""
    victim = tmp_path / "victim.html"
    victim.write_bytes(VICTIM)
    moved = tmp_path / "summary-real.json"
    (result_dir / "summary.json").rename(moved)
    _link(result_dir / "summary.json", moved)
    _link(result_dir / "report.html", victim)
    code, err = _cli(["report", str(result_dir)], capsys)
    _one_line_refusal(code, err)
    assert victim.read_bytes() == VICTIM


# ---------------------------------------------------------------- links: leakaudit audit --out


@pytest.fixture
def fake_audit(monkeypatch, tmp_path):
    """``leakaudit audit`` with the audit itself replaced by a known result: the test is about
    what happens to --out, and counts whether the (expensive) work started."""
    calls: list[object] = []

    def run_audit(opts, progress=True):
        calls.append(opts)
        return big_result(8, 32)

    monkeypatch.setattr("leakaudit.auditing.pipeline.run_audit", run_audit)
    for cls in ("a", "b"):  # the CLI checks the dataset's format before the audit
        save_png(np.zeros((8, 8, 3), np.float32), tmp_path / "data" / cls / "x.png")
    (tmp_path / "model.pt").write_bytes(b"")
    args = ["audit", "--data", str(tmp_path / "data"), "--model", str(tmp_path / "model.pt"),
            "--methods", "saliency", "--quiet", "--no-cache"]  # fmt: skip
    return args, calls


def test_fake_audit_writes_a_result_folder(fake_audit, tmp_path, capsys):
    """The harness itself works: without links the audit writes every output."""
    args, calls = fake_audit
    out = tmp_path / "out"
    code, err = _cli([*args, "--out", str(out)], capsys)
    assert code in (0, 1, 3), err
    assert calls and all((out / n).is_file() for n in ALL_OUTPUTS)
    assert not _temps(out)


@pytest.mark.parametrize("name", [*ALL_OUTPUTS, "junit.xml"])
def test_audit_refuses_a_link_in_out_before_the_work(fake_audit, result_dir, tmp_path, capsys,
                                                     name):  # fmt: skip
    args, calls = fake_audit
    victim = tmp_path / "victim.bin"
    victim.write_bytes(VICTIM)
    _link(result_dir / name, victim)
    before = _snapshot(result_dir)
    argv = [*args, "--out", str(result_dir), "--junit", str(result_dir / "junit.xml")]
    code, err = _cli(argv, capsys)
    _one_line_refusal(code, err)
    assert not calls  # refused before the audit ran
    assert victim.read_bytes() == VICTIM
    assert _snapshot(result_dir) == before
    assert not _temps(result_dir, tmp_path)


@pytest.mark.parametrize("name", ALL_OUTPUTS)
def test_write_report_refuses_a_link_made_during_the_audit(result_dir, tmp_path, name):
    """A link planted after the early check (while the audit ran) is still refused."""
    victim = tmp_path / "victim.bin"
    victim.write_bytes(VICTIM)
    _link(result_dir / name, victim)
    before = _snapshot(result_dir)
    with pytest.raises(OutputError, match="link"):
        write_report(big_result(8, 32), result_dir)
    assert victim.read_bytes() == VICTIM
    assert _snapshot(result_dir) == before
    assert not _temps(result_dir, tmp_path)


def test_dangling_link_in_out_creates_nothing(result_dir, tmp_path):
    target = tmp_path / "created.json"
    _link(result_dir / "run_info.json", target)
    with pytest.raises(OutputError):
        write_report(big_result(8, 32), result_dir)
    assert not target.exists()


def test_junit_link_is_refused(result_dir, tmp_path):
    victim = tmp_path / "victim.xml"
    victim.write_bytes(VICTIM)
    _link(tmp_path / "ci.xml", victim)
    with pytest.raises(OutputError):
        write_report(big_result(8, 32), result_dir, junit_path=tmp_path / "ci.xml")
    assert victim.read_bytes() == VICTIM


def test_linked_subfolder_inside_out_is_not_written_through(tmp_path):
    root, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / "insight").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(OutputError, match="insight"):
        write_atomic(root / "insight" / "page.html", "<p>x</p>", root)
    with pytest.raises(OutputError), atomic_path(root / "insight" / "a" / "m.png", root):
        pass
    assert list(elsewhere.iterdir()) == []


def test_insight_page_refuses_a_link(tmp_path):
    from leakaudit.insight.page import write_page

    victim = tmp_path / "victim.html"
    victim.write_bytes(VICTIM)
    (tmp_path / "out").mkdir()
    _link(tmp_path / "out" / "insight.html", victim)
    with pytest.raises(OutputError):
        write_page(tmp_path / "out", {})
    assert victim.read_bytes() == VICTIM


def test_train_checkpoint_and_card_refuse_links(tmp_path):
    from leakaudit.models.load import MODEL_CARD, save_checkpoint

    victim = tmp_path / "victim.json"
    victim.write_bytes(VICTIM)
    out = tmp_path / "model"
    out.mkdir()
    _link(out / MODEL_CARD, victim)
    with pytest.raises(OutputError):
        save_checkpoint(torch.nn.Linear(2, 2), "small_cnn", {}, ["a", "b"], None, None,
                        out / "model.pt")  # fmt: skip
    assert victim.read_bytes() == VICTIM
    assert not (out / "model.pt").exists()  # the pair is written together or not at all
    assert not _temps(out)


def test_tells_json_and_bench_json_refuse_links(tmp_path):
    from leakaudit.data.writers import write_tells_json

    victim = tmp_path / "victim.json"
    victim.write_bytes(VICTIM)
    _link(tmp_path / "tells.json", victim)
    with pytest.raises(OutputError):
        write_tells_json(tmp_path / "tells.json", {"version": 1}, {})
    _link(tmp_path / "bench.json", victim)
    with pytest.raises(OutputError):
        write_atomic(tmp_path / "bench.json", "{}")
    assert victim.read_bytes() == VICTIM


# ---------------------------------------------------------------- failures half-way


@pytest.mark.parametrize("error", [RuntimeError("template broke"), KeyboardInterrupt()])
def test_rendering_failure_keeps_the_previous_set(result_dir, monkeypatch, error):
    before = _snapshot(result_dir)

    def broken(*a, **k):
        raise error

    monkeypatch.setattr("leakaudit.report.markdown.render_markdown", broken)
    with pytest.raises(type(error)):
        write_report(big_result(8, 32), result_dir)
    assert _snapshot(result_dir) == before
    assert not _temps(result_dir)


def test_rerender_failure_keeps_the_previous_files(result_dir, monkeypatch):
    """``leakaudit report``: md fails after html was rendered; the old report.html stays."""
    (result_dir / "report.html").write_bytes(b"<p>the previous report</p>")
    before = _snapshot(result_dir)

    def broken(*a, **k):
        raise RuntimeError("template broke")

    monkeypatch.setattr("leakaudit.report.markdown.render_markdown", broken)
    with pytest.raises(RuntimeError):
        render_outputs(result_dir, None, ("html", "md"))
    assert _snapshot(result_dir) == before
    assert not _temps(result_dir)


def test_disk_full_on_the_second_write_keeps_the_old_set(result_dir, monkeypatch):
    before = _snapshot(result_dir)
    real_open = io.open
    opened: list[str] = []

    def full_disk(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+") and str(file).startswith(str(result_dir)):
            opened.append(str(file))
            if len(opened) >= 2:  # the disk stays full (zipfile retries another mode)
                raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr(io, "open", full_disk)
    with pytest.raises(OSError) as exc:
        write_report(big_result(8, 32), result_dir)
    monkeypatch.undo()
    assert exc.value.errno == errno.ENOSPC
    assert _snapshot(result_dir) == before
    assert not _temps(result_dir)


def test_a_complete_run_replaces_the_whole_set(result_dir):
    write_report(big_result(8, 32), result_dir)
    s = json.loads((result_dir / "summary.json").read_text())
    assert list(s["models"]) == ["model"]
    assert b"model" in (result_dir / "report.html").read_bytes()
    assert not _temps(result_dir)
    assert (result_dir / "summary.md").stat().st_mode & 0o777 != 0o600  # not mkstemp's mode


def test_output_set_commits_together_or_not_at_all(tmp_path):
    (tmp_path / "a.txt").write_text("old a")
    with pytest.raises(ValueError), OutputSet(tmp_path) as outs:
        outs.write(tmp_path / "a.txt", "new a")
        outs.write(tmp_path / "b.txt", "new b")
        raise ValueError("half-way")
    assert (tmp_path / "a.txt").read_text() == "old a"
    assert not (tmp_path / "b.txt").exists() and not _temps(tmp_path)
    with OutputSet(tmp_path) as outs:
        outs.write(tmp_path / "a.txt", "new a")
        outs.write(tmp_path / "b.txt", "new b")
    assert (tmp_path / "a.txt").read_text() == "new a" and (tmp_path / "b.txt").exists()


# ---------------------------------------------------------------- --junit checked before the work


def test_junit_in_an_unwritable_place_fails_before_the_audit(fake_audit, tmp_path, capsys):
    args, calls = fake_audit
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    argv = [*args, "--out", str(tmp_path / "out"), "--junit", str(blocker / "junit.xml")]
    code, err = _cli(argv, capsys)
    assert code == 2 and "--junit" in err and err.strip().count("\n") == 0, err
    assert not calls


def test_junit_in_a_read_only_folder_fails_before_the_audit(fake_audit, tmp_path, capsys):
    args, calls = fake_audit
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        probe = ro / "probe"
        try:
            probe.write_text("x")
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip("running as root: a read-only mode does not stop writes")
        argv = [*args, "--out", str(tmp_path / "out"), "--junit", str(ro / "junit.xml")]
        code, err = _cli(argv, capsys)
        assert code == 2 and "--junit" in err, err
        assert not calls
    finally:
        ro.chmod(0o755)


def test_power_outputs_refuse_a_link_and_are_written_together(tmp_path, monkeypatch):
    import pandas as pd

    from leakaudit.experiments import power_result

    victim = tmp_path / "victim.json"
    victim.write_bytes(VICTIM)
    (tmp_path / "power.md").write_text("old tables\n")
    _link(tmp_path / "power.json", victim)
    monkeypatch.setattr(power_result, "format_power_table", lambda r: "new tables")
    fake = type("R", (), {"to_json": lambda self: {}, "table": lambda self: pd.DataFrame()})()
    with pytest.raises(OutputError):
        power_result.write_power(fake, tmp_path)
    assert victim.read_bytes() == VICTIM
    assert (tmp_path / "power.md").read_text() == "old tables\n"  # nothing replaced
    assert not _temps(tmp_path)
