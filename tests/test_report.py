"""Rendering: self-contained HTML, data escaped, summary schema, deterministic output."""

import json
import re
from dataclasses import replace

import numpy as np
import pytest

from leakaudit.auditing.audit_result import AuditResult
from leakaudit.auditing.model_audit import audit_model
from leakaudit.auditing.verdict import Thresholds
from leakaudit.data.samples import DataProblem, Dataset
from leakaudit.data.synthetic import make_shapes
from leakaudit.data.tells import TellSpec, poison
from leakaudit.models.zoo import build
from leakaudit.report import render_html, to_summary, write_report

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def result() -> AuditResult:
    data = make_shapes(8, seed=0, size=32)
    data = Dataset(data.samples, [EVIL, "square", "tri&angle", "cross"])
    data = poison(data, TellSpec(size=5), seed=0)
    data.samples[0] = data.samples[0].with_(id='img"<b>evil</b>.png')
    data.problems.append(DataProblem("bad<file>.jpg", "truncated <JPEG>", "skipped"))
    spec = TellSpec(size=5)
    methods = {"saliency": {}, "lime": {"n_samples": 16, "n_segments": 10}}
    models = {
        name: audit_model(
            build("small_cnn", 4, seed=k, width=4),
            name,
            data,
            methods,
            accuracy=0.5,
            thresholds=Thresholds(),
            colours={k: spec.colour_for(k) for k in range(4)},
            gallery=[0, 1],
            progress=False,
        )
        for k, name in enumerate(["clean", "poisoned"])
    }
    return AuditResult("t", data.class_names, models, data, [0, 1], 0, {"x": EVIL}, Thresholds())


def test_html_escapes_everything_from_data(result):
    html = render_html(result)
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>evil</b>" not in html and "&lt;b&gt;evil&lt;/b&gt;" in html
    assert "tri&amp;angle" in html
    assert "bad&lt;file&gt;.jpg" in html


def test_html_is_self_contained(result):
    html = render_html(result)
    assert "http://" not in html and "https://" not in html
    assert html.count("<img ") == html.count('src="data:image/png;base64,') > 0  # all inline


def test_summary_has_the_documented_keys(result):
    s = to_summary(result)
    for name in ("clean", "poisoned"):
        m = s["models"][name]
        # Both fixture models are untrained, seeded SmallCNNs ("poisoned" is only a name): neither
        # learnt the planted tell, so removing it costs nothing and no condition fails, while the
        # tell-removal conditions can decide (tells are planted): the verdict must be "clean".
        assert m["verdict"] == "clean", (name, [(c["name"], c["status"]) for c in m["conditions"]])
        assert not [c for c in m["conditions"] if c["status"] == "FAIL"]
        removal = {c["name"]: c["status"] for c in m["conditions"]}["tell removal"]
        assert removal == "PASS"
        assert isinstance(m["accuracy"], float)
        for method in ("saliency", "lime"):
            assert set(m["methods"][method]) >= {"outside_mass", "tell_mass", "tell_top_rate"}
    assert 0 < s["tell_area_fraction"] < 0.1
    assert s["seed"] == 0
    json.dumps(s, allow_nan=False)  # strictly valid JSON: NaN became null


def test_outputs_are_deterministic(result, tmp_path):
    write_report(result, tmp_path / "a")
    write_report(result, tmp_path / "b")
    for name in ("report.html", "summary.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_nan_scores_render_as_dash(result):
    s = to_summary(result)
    assert s["models"]["clean"]["methods"]["lime"]["per_class"]
    assert np.isfinite(s["tell_area_fraction"])
    # every score of the clean model's LIME rows undefined: the metrics table shows dashes
    clean = result.models["clean"]
    undefined = clean.per_sample.copy()
    undefined.loc[undefined["method"] == "lime", ["outside_mass", "tell_mass", "tell_hit"]] = np.nan
    nan_models = {**result.models, "clean": replace(clean, per_sample=undefined)}
    html = render_html(replace(result, models=nan_models))
    lime_all = r'<td class="l">lime</td><td class="l">all</td><td>8</td>(.*?)</tr>'
    row = re.search(lime_all, html, re.S)
    cells = re.findall(r"<td>(.*?)</td>", row.group(1))
    assert cells[:3] == ["–", "–", "–"]  # clean: outside, on tell, top on tell
    assert all(c != "–" for c in cells[3:]) and len(cells) == 6  # poisoned: numbers
    assert ">nan" not in html.lower()  # never a raw NaN in a cell


def test_class_mean_maps_known_answer_and_chunking(monkeypatch):
    """The report's class hotspots: per image clipped at 0 and divided by its peak, then
    averaged per class; a skipped (NaN) image does not count; chunks change nothing."""
    from leakaudit.report import render

    maps = np.zeros((5, 2, 2), np.float16)
    maps[0, 0, 0], maps[0, 1, 1] = 2.0, -3.0  # class 0: peak 2 → [[1, 0], [0, 0]]
    maps[1, 0, 1] = 4.0  # class 0: → [[0, 1], [0, 0]]
    maps[2] = np.nan  # class 0, not explained
    maps[3, 1, 0] = 0.5  # class 1: → [[0, 0], [1, 0]]
    labels = np.array([0, 0, 0, 1, 1])  # image 4 (class 1) is all zeros: counts, adds 0
    want0, want1 = np.array([[0.5, 0.5], [0, 0]]), np.array([[0, 0], [0.5, 0]])
    for chunk in (1024, 2):
        monkeypatch.setattr(render, "HOTSPOT_CHUNK", chunk)
        m0, m1, m2 = render.class_mean_maps(maps, labels, 3)
        assert np.allclose(m0, want0) and np.allclose(m1, want1) and m2 is None
