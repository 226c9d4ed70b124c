"""A new sweet-spot technique is one module plus its YAML node: registered here (as its module would
register itself on import), with its settings given as a config override, it votes, the report lists it
and the vote plot draws it. Nothing else of the analysis is edited.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from redheart.analysis import plots
from redheart.analysis.common import TechniqueResult
from redheart.analysis.errors import AnalysisError
from redheart.analysis.registry import REGISTRY, GroupInputs, Technique, techniques
from redheart.analysis.run import analyze
from redheart.analysis.synthetic import Plan, write_run
from tests.test_analysis_run import compose_analyze

NAME = "earliest_plus"


# --- the toy technique: what its module would hold --------------------------------------------------
def _parse(node: Mapping[str, Any], where: str) -> dict[str, Any]:
    skip = node.get("skip") if isinstance(node, Mapping) else None
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise AnalysisError(f"{where}.skip: expected an integer >= 0, got {skip!r}")
    return {"skip": skip}


def _earliest_plus(x: GroupInputs) -> TechniqueResult:
    """The eligible epoch `skip` checkpoints after the first one, fully confident."""
    allowed = [e for e, ok in zip(x.epochs, x.eligible, strict=True) if ok]
    return TechniqueResult(allowed[min(x.options["skip"], len(allowed) - 1)], 1.0, {"skip": x.options["skip"]})


TOY = Technique(NAME, _earliest_plus, "earliest eligible + skip", "P", "tab:pink", parse_options=_parse)
# -----------------------------------------------------------------------------------------------------


@pytest.fixture
def toy_registered(monkeypatch):
    techniques()  # the built-ins first, as on any import of the analysis
    monkeypatch.setitem(REGISTRY, NAME, TOY)


def test_a_registered_technique_votes_and_appears_in_the_report_and_the_plots(toy_registered, tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append((path.name, fig)) or path)
    run = write_run(tmp_path / "run", Plan())
    cfg = compose_analyze(f"ckpt_dir={run}", f"+analysis.{NAME}={{skip: 3}}", f"+analysis.vote.weights.{NAME}=100")
    result = analyze(cfg)
    for group, entry in result["groups"].items():
        toy = entry["techniques"][NAME]
        assert toy["epoch"] == run_epochs(entry)[3] and toy["evidence"] == {"skip": 3}, group
        assert NAME in entry["techniques"]["vote"]["evidence"]["voters"]
        assert entry["recommended_epoch"] == toy["epoch"], group  # weight 100: the toy outvotes the rest
    report = (run / "analysis_results" / "analysis_report.md").read_text()
    assert f"| {TOY.label} | {result['groups']['backbone']['techniques'][NAME]['epoch']} | 1.00 |" in report
    vote_figure = dict(figures)["vote.png"]
    legend = [t.get_text() for t in vote_figure.axes[0].get_legend().get_texts()]
    assert NAME in legend
    assert any(c.get_label() == NAME and c.get_facecolor().size for c in vote_figure.axes[0].collections)


def run_epochs(entry: dict) -> list[int]:
    return [e for e in map(int, entry["series"]["mcda_score"]) if e not in entry["excluded_epochs"]
            and (entry["bound"] is None or e <= entry["bound"])]


def test_a_technique_missing_its_yaml_node_is_named(toy_registered, tmp_path):
    run = write_run(tmp_path / "run", Plan())
    with pytest.raises(AnalysisError, match=f"conf/analysis: key '{NAME}' is missing"):
        analyze(compose_analyze(f"ckpt_dir={run}"))
