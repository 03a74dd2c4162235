"""End to end on the quick configuration: the cheater is caught, the clean model is not flagged."""

import json

import pytest


@pytest.fixture(scope="module")
def demo_out(demo_quick):
    return demo_quick  # one quick demo run per session (tests/conftest.py), shared


def test_cheating_model_is_caught_and_clean_model_is_not(demo_out):
    out, _ = demo_out
    s = json.loads((out / "summary.json").read_text())
    clean, poisoned = s["models"]["clean"], s["models"]["poisoned"]
    chance = s["tell_area_fraction"]
    assert poisoned["verdict"] == "leak"
    assert clean["verdict"] == "clean"
    assert poisoned["accuracy"] >= 0.95
    assert clean["accuracy"] >= 0.75  # quick mode trains on 1 280 small images only
    assert poisoned["methods"]["lime"]["tell_mass"] >= 0.4
    assert poisoned["methods"]["saliency"]["tell_mass"] >= 3 * chance
    for method in ("saliency", "lime"):
        assert (
            clean["methods"][method]["tell_mass"] <= 0.5 * poisoned["methods"][method]["tell_mass"]
        )
    assert poisoned["behaviour"]["removal"]["accuracy_drop"] > 0.5
    assert poisoned["behaviour"]["swap"]["follow_rate"] > 0.9


def test_cli_prints_report_paths(demo_out):
    out, output = demo_out
    assert str(out / "report.html") in output
    assert (out / "report.html").stat().st_size > 10_000
