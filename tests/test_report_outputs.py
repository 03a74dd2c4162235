"""summary.md, JUnit XML, re-render, galleries, plots, footer — on known-answer results."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from report_fixtures import EVIL, HOSTILE_MODEL, big_result, two_model_result

from leakaudit.report import render_outputs, write_report
from leakaudit.report.bundle import ReportError, load_bundle
from leakaudit.report.markdown import MAX_LINES, md_escape
from leakaudit.report.plots import power_heatmap_svg

XSD = Path(__file__).with_name("junit.xsd")


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    write_report(
        two_model_result(),
        out,
        command="leakaudit compare --names 'a|b'",
        junit_path=out / "junit.xml",
    )
    return out


def test_rerender_is_byte_identical(written, tmp_path):
    render_outputs(written, tmp_path, ("html", "md", "junit"))
    for name in ("report.html", "summary.md", "junit.xml"):
        assert (tmp_path / name).read_bytes() == (written / name).read_bytes(), name


def test_report_command_rerenders_without_model_or_data(written, tmp_path):
    from leakaudit.cli import main

    res = CliRunner().invoke(
        main, ["report", str(written), "--out", str(tmp_path), "--format", "html,md,junit"]
    )
    assert res.exit_code == 0, res.output
    for name in ("report.html", "summary.md", "junit.xml"):
        assert (tmp_path / name).read_bytes() == (written / name).read_bytes(), name


def test_report_command_bad_folder_is_one_line_exit_2(tmp_path, capsys):
    from leakaudit.cli import run

    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(SystemExit) as exit_:
        run(["report", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.strip().count("\n") == 0 and "summary.json" in err


def test_missing_or_corrupt_bundle_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match=r"results\.npz: not found"):
        load_bundle(tmp_path / "results.npz")
    (tmp_path / "results.npz").write_bytes(b"garbage")
    with pytest.raises(ReportError, match="cannot read"):
        load_bundle(tmp_path / "results.npz")


def test_summary_md_has_verdicts_and_every_failed_condition(written):
    md = (written / "summary.md").read_text()
    s = json.loads((written / "summary.json").read_text())
    assert len(md.splitlines()) <= MAX_LINES
    assert "🔴 **LEAK**" in md and "🟢 **CLEAN**" in md
    failed = [
        (m, c) for m, v in s["models"].items() for c in v["conditions"] if c["status"] == "FAIL"
    ]
    assert len(failed) == 2
    for model, c in failed:
        row = next(r for r in md.splitlines() if md_escape(c["name"]) in r and "FAIL" in r)
        assert md_escape(model) in row and f"{c['value']:.3f}" in row and f"{c['fail']:.2f}" in row
    assert "tell swap" in md and "WARN" in md  # warned conditions are listed too
    assert "leakaudit compare --names 'a|b'" in md  # the command, in a code block


def test_markdown_escapes_hostile_strings(written):
    md = (written / "summary.md").read_text()
    body = md.split("<details>")[0]
    assert "<script" not in body and "<b>" not in body
    assert "&lt;script&gt;" in body
    for line in body.splitlines():  # table rows keep their column count: no stray pipe
        if line.startswith("| model | condition"):
            width = line.count("|")
        elif line.startswith("| ") and "---" not in line and "method" not in line:
            assert len(re.findall(r"(?<!\\)\|", line)) == width, line
    assert "`" not in body.replace("`report.html`", "").replace("`summary.json`", "")
    assert md_escape("a|b`c\nd<e>&") == "a\\|b&#96;c d&lt;e&gt;&amp;"


def test_junit_validates_against_the_xsd(written):
    lxml = pytest.importorskip("lxml.etree")
    schema = lxml.XMLSchema(lxml.parse(str(XSD)))
    doc = lxml.parse(str(written / "junit.xml"))
    assert schema.validate(doc), schema.error_log


def test_junit_counts_and_hostile_names(written):
    root = ET.parse(written / "junit.xml").getroot()
    s = json.loads((written / "summary.json").read_text())
    suites = {x.get("name"): x for x in root.iter("testsuite")}
    assert set(suites) == {f"leakaudit.{m}" for m in s["models"]}
    bad = suites[f"leakaudit.{HOSTILE_MODEL}"]
    cases = bad.findall("testcase")
    assert len(cases) == len(s["models"][HOSTILE_MODEL]["conditions"])
    assert [c.get("name") for c in cases if c.find("failure") is not None] == [
        "tell removal",
        f"lime: {EVIL} | `mass`",
    ]
    assert [c.get("name") for c in cases if c.find("skipped") is not None] == [
        "saliency: top on tell"
    ]
    warn = [c for c in cases if c.find("system-out") is not None]
    assert [c.get("name") for c in warn] == ["tell swap"]
    assert warn[0].find("system-out").text.startswith("WARN")
    assert root.get("failures") == "2" and root.get("skipped") == "2" and root.get("tests") == "8"
    raw = (written / "junit.xml").read_text()
    assert EVIL not in raw and "&lt;script&gt;" in raw


def test_html_escapes_and_is_self_contained(written):
    html = (written / "report.html").read_text()
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>evil</b>" not in html and "<b>ed" not in html
    assert not re.search(r"https?://", html)
    assert not re.search(r"""(src|href)=["'](?!data:)""", html)
    assert "default-src 'none'" in html


def test_galleries_show_the_images_that_matter(written):
    data = load_bundle(written / "results.npz")
    by_kind = {
        (g["kind"], g["model"]): [it["index"] for it in g["items"]] for g in data.meta["galleries"]
    }
    # tell_mass rises with the index: the worst offenders are the last 8, highest first
    assert by_kind[("worst", "clean")] == list(range(15, 7, -1))
    # wrong predictions, most confident first
    assert by_kind[("misclassified", "clean")] == [7, 11, 3]
    # one typical image per class, median outside mass: class 0 holds 0, 4, 8, 12
    typical = by_kind[("typical", None)]
    assert [int(data.labels[i]) for i in typical] == [0, 1, 2, 3]
    assert typical[0] in (4, 8)
    html = (written / "report.html").read_text()
    assert html.count('class="panel wrong"') >= 6  # 3 misclassified × 2 models at least
    assert "(90.0 %)" in html  # confidence of the most confident mistake


def test_plots_and_footer_are_there(written):
    html = (written / "report.html").read_text()
    assert html.count("<svg") >= 4  # 2 distributions + 2 sanity curves
    assert "clean" in html and "po|is`on&lt;b&gt;ed" in html
    assert "sha256" in html and "run_info.json" in html
    assert "leakaudit compare --names &#39;a|b&#39;" in html
    svg = power_heatmap_svg(
        [
            {"size": 4, "prevalence": 0.5, "detection_rate": 0.25},
            {"size": 8, "prevalence": 0.5, "detection_rate": 1.0},
        ]
    )
    assert "0.25" in svg and "1.00" in svg and "4 px" in svg


def test_older_results_without_maps_or_confidence_still_render(tmp_path):
    import copy

    result = copy.deepcopy(two_model_result())
    for audit in result.models.values():
        del audit.compact_maps
        audit.per_sample = audit.per_sample.drop(columns=["confidence", "p_true"])
    write_report(result, tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "Hotspots per class" not in html
    assert "no map saved" in html  # panels beyond the old gallery have no map: said so
    assert "(90.0 %)" not in html


def test_report_size_is_bounded_whatever_the_audit_size(tmp_path):
    """Panels are capped, tables are per class: 6× the images, (almost) the same report."""
    sizes = {}
    for n in (200, 1200):
        write_report(big_result(n), tmp_path / str(n))
        html = (tmp_path / str(n) / "report.html").read_text()
        sizes[n] = len(html)
        assert html.count('<figure class="panel') <= 2 * 8 + 4  # worst + misclassified + typical
    assert sizes[1200] < 20e6
    assert abs(sizes[1200] - sizes[200]) < 0.1 * sizes[200], sizes


def test_undecodable_file_name_does_not_break_the_report(tmp_path):
    import copy

    result = copy.deepcopy(two_model_result())
    raw = "bad\udcff.png"  # os.listdir's surrogate escape for a non-UTF-8 byte
    result.eval_data.samples[3] = result.eval_data.samples[3].with_(id=raw)
    bad = result.eval_data.samples[3].id
    assert bad == "bad\\xff.png"  # escaped once, where every sample is made
    for audit in result.models.values():
        audit.per_sample.loc[audit.per_sample["id"] == "img-00003", "id"] = bad
    write_report(result, tmp_path, junit_path=tmp_path / "junit.xml")
    assert "bad\\xff.png" in (tmp_path / "report.html").read_text()
    render_outputs(tmp_path, tmp_path / "again", ("html",))
    assert (tmp_path / "again" / "report.html").read_bytes() == (
        tmp_path / "report.html"
    ).read_bytes()


def test_command_line_is_rebuilt_from_the_options_given():
    import click

    from leakaudit.report.command import command_line

    seen = {}

    @click.group()
    def cli():
        pass

    @cli.command()
    @click.argument("folder")
    @click.option("--out", default="x")
    @click.option("--seed", type=int, default=0)
    @click.option("--quick", is_flag=True)
    @click.option("--tag", multiple=True)
    def run(folder, out, seed, quick, tag):
        seen["cmd"] = command_line(click.get_current_context())

    res = CliRunner().invoke(cli, ["run", "my dir", "--quick", "--tag", "a|b", "--tag", "c",
                                   "--out", "o;rm"])  # fmt: skip
    assert res.exit_code == 0, res.output
    # declaration order, defaults left out, shell-quoted
    assert seen["cmd"] == "leakaudit run 'my dir' --out 'o;rm' --quick --tag 'a|b' --tag c"
