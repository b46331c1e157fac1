"""Citations as data (experiments/sources.py): tags of SOURCES.md's three kinds, PAPER texts from the module,
no JMIV section numbers anywhere, each rule's history, and the uncertainty helpers of common.py."""

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from geoae.experiments import sources
from geoae.experiments.common import VERDICTS, Context, bootstrap_interval, decide
from geoae.experiments.registry import EXPERIMENTS, IDS

ROOT = Path(__file__).resolve().parents[1]

# The only quotes of the sources that SOURCES.md gives: a quote in sources.py must be (part of) one of these.
QUOTES = (
    "can be done", "seems to represent the area and not the radius", "we describe … the encoding process",
    "in all our experiments", "a very close match", "a closed-form solution … the network indeed finds this solution",
    "such that a cut-off can be carried out", "the network is unable to recreate the input disks",
    "is not able to extrapolate further than the largest observed radius",
    "the code z increases in amplitude during the training",
    "works particularly well … the resulting manifold is continuous", "the best regularization approaches",
    "a handcrafted filter that achieves encoding perfectly", "the network naturally finds this filter during training",
    "the decoding can be achieved if the dataset is sampled in an appropriate manner",
    "experimented with other simple geometric objects such as squares and ellipses, with similar results in an "
    "optimal code size",
)


def test_every_claim_has_sources_readings_and_a_rule_history():
    assert set(sources.CLAIMS) == set(IDS) and set(sources.RULES) == set(IDS) and set(sources.READING_SHORT) == set(IDS)
    for exp in EXPERIMENTS:
        src = sources.CLAIMS[exp.id]
        assert src.says and src.readings and all(r.strip() for r in src.readings), exp.id
        if exp.paper_claim:
            assert src.tags, f"{exp.id}: a claim of the paper needs a source"
        else:  # beyond the paper: no source, or ICLR 2018 §3.3 (squares and ellipses)
            assert set(src.tags) <= {"ICLR 2018 §3.3"}, exp.id
            assert sources.statement(exp.id).startswith("Beyond the paper")


@pytest.mark.parametrize("claim_id", IDS)
def test_source_tags_are_of_the_three_kinds(claim_id):
    for tag in sources.CLAIMS[claim_id].tags:
        assert not sources.malformed_tag(tag), f"{claim_id}: {tag!r} is not a SOURCES.md tag"
        assert tag.startswith(("JMIV abstract", "ICLR 2018 §", "ICLR 2018 ", "released code"))


@pytest.mark.parametrize("tag", ["JMIV Sec. 4.1", "JMIV abstract, Fig. 3", "ICLR 2018", "ICLR 2018 Sec. 3",
                                 "paper", "ICLR 2018 §", "released code, somewhere"])
def test_tags_outside_the_three_kinds_are_refused(tag):
    assert sources.malformed_tag(tag)


def test_quotes_are_only_those_sources_md_gives():
    for claim_id, src in sources.CLAIMS.items():
        for quote in re.findall(r'"([^"]+)"', src.says):
            assert any(quote in q for q in QUOTES), f"{claim_id}: {quote!r} is not a quote SOURCES.md gives"


def test_invented_statements_are_gone():
    invented = ("no number is given", "a figure of a learned filter", "overlays the learned profile", "blurry",
                "treats disks only", "treats 2-D disks only")
    for claim_id, src in sources.CLAIMS.items():
        text = sources.statement(claim_id) + " ".join(src.readings)
        assert not any(s in text for s in invented), claim_id


@pytest.mark.parametrize("exp", EXPERIMENTS, ids=IDS)
def test_experiment_paper_text_comes_from_the_sources_module(exp):
    assert exp.load().PAPER == sources.statement(exp.id)


def _files():
    yield from (ROOT / "src").rglob("*.py")
    yield from (p for p in (ROOT / "README.md", ROOT / "REPRODUCE.md") if p.exists())
    yield from (ROOT / "docs").glob("*.md")


def test_no_jmiv_section_figure_or_equation_is_cited():
    """`grep -rn "Sec\\. [0-9]" src/ README.md REPRODUCE.md` finds nothing (ICLR 2018 sections are written §n)."""
    bad = []
    for path in _files():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"Sec\. [0-9]", line) or re.search(r"JMIV[^.;\n]{0,30}\b(Sec|Fig|Eq|Table|§)\.? ?[0-9]", line):
                bad.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bad, "\n".join(bad)


def test_rule_history_commits_exist():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for claim_id, hist in sources.RULES.items():
        commits = [hist.set_at] + re.findall(r"\b[0-9a-f]{7}\b", hist.revised_after_results)
        for commit in filter(None, commits):
            ok = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
                                capture_output=True).returncode == 0
            assert ok, f"{claim_id}: commit {commit} not found"


def test_rule_labels():
    assert sources.rule_label({"set_at": "aee701a", "revised_after_results": ""}) == "Rule (set at commit aee701a)"
    assert sources.rule_label({"set_at": "", "revised_after_results": ""}, "0123456789ab") == \
        "Rule (set at commit 0123456, the results' commit)"
    assert sources.rule_label(sources.rule_history("D6")).startswith("Rule (revised after results, commit 081cdf2: ")
    assert "0.54 px" in sources.rule_history("D6")["revised_after_results"]
    for claim_id in ("D2", "D6", "D7", "P3"):  # issue 21: revised (or read) after results had been seen
        assert sources.rule_history(claim_id)["revised_after_results"], claim_id


def test_results_record_carries_the_source_fields(tmp_path):
    """End to end on P1 (nothing to train): the results file's paper, source and reading come from sources.py."""
    from geoae.experiments.runner import run_experiment

    ctx = Context(profile="tiny", seeds=(0,), out=tmp_path / "P1", runs=tmp_path / "runs")
    rec = run_experiment("P1", ctx, progress=False)
    assert rec["status"] == "ok", rec.get("error")
    assert rec["paper"] == sources.statement("P1")
    assert rec["source"] == {"tags": ["JMIV abstract"], "says": sources.CLAIMS["P1"].says}
    assert rec["reading"] == sources.readings("P1") and rec["rule_history"] == sources.rule_history("P1")


# ------------------------------------------------------------------------------- uncertainty helpers


def test_inconclusive_is_a_verdict():
    assert "inconclusive" in VERDICTS


def test_bootstrap_interval_is_deterministic_and_brackets_the_mean():
    v = [0.3, 0.5, 0.45, 0.6, 0.2]
    lo, hi = bootstrap_interval(v)
    assert (lo, hi) == bootstrap_interval(v) and lo < np.mean(v) < hi
    assert min(v) <= lo and hi <= max(v)
    lo90, hi90 = bootstrap_interval(v, level=0.5)
    assert lo <= lo90 and hi90 <= hi and (lo90, hi90) != (lo, hi)
    assert bootstrap_interval([2.0, 2.0, 2.0]) == (2.0, 2.0)
    lo_med, hi_med = bootstrap_interval([0, 0, 0, 10], stat=np.median)
    assert lo_med == 0.0 and hi_med > 0


def test_bootstrap_interval_edge_cases():
    assert bootstrap_interval([0.4]) == (-np.inf, np.inf)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_interval([0.1, np.nan])
    with pytest.raises(ValueError, match="no values"):
        bootstrap_interval([])
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval([1, 2], level=1.5)


def test_decide_confirms_refutes_or_is_inconclusive():
    assert decide([0.6, 0.7, 0.65, 0.8], 0.5, ">=").verdict == "confirmed"
    assert decide([0.1, 0.2, 0.15], 0.5, ">=").verdict == "not reproduced"
    straddle = decide([0.35, 0.05, 0.9, 0.6], 0.5, ">=")
    assert straddle.verdict == "inconclusive" and straddle.lo < 0.5 < straddle.hi
    assert "inconclusive at 4 seeds" in str(straddle) and "needs >= 0.5" in str(straddle)
    assert decide([0.01, 0.02], 0.05, "<").verdict == "confirmed"
    assert decide([0.5], 0.05, "<").verdict == "inconclusive"  # one seed: nothing known of the spread
    with pytest.raises(ValueError, match="direction"):
        decide([1, 2], 0.5, "above")
