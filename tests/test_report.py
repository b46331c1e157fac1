"""The report builder, on fixed results files written by the test (no training)."""

import json
from pathlib import Path

import pytest

from geoae.report import build_report, fmt, load_results
from geoae.train import write_json

PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000105fe02fea70000000049454e44ae426082"
)


def _ok(exp_id, value, verdict="confirmed"):
    return {
        "id": exp_id, "title": f"title {exp_id}", "claim": f"claim of {exp_id}", "paper": "paper says so",
        "status": "ok", "profile": "quick", "seeds": [0, 1, 2], "git_commit": "abc123",
        "runtime_s": 12.5, "train_core_s": 240.0,
        "numbers": {"spearman_rho": value, "n_runs": 3}, "descriptions": {"spearman_rho": "rank corr",
                                                                          "n_runs": "runs"},
        "verdict": verdict, "rule": "confirmed if rho > 0.99", "control": "a shuffled code", "figures": ["fig.png"],
        "tables": [{"title": "per seed", "columns": ["seed", "rho"], "rows": [[0, value], [1, 0.5]]}],
        "notes": "",
    }


@pytest.fixture()
def results(tmp_path):
    write_json(tmp_path / "D2" / "results.json", _ok("D2", 0.987654321))
    (tmp_path / "D2" / "fig.png").write_bytes(PNG_1x1)
    write_json(tmp_path / "D6" / "results.json", _ok("D6", 1.5e-5, verdict="not reproduced"))
    write_json(tmp_path / "D4" / "results.json", {"id": "D4", "status": "failed", "profile": "quick",
                                                   "seeds": [0], "runtime_s": 1.0,
                                                   "error": "RuntimeError: boom"})
    return tmp_path


def test_numbers_come_from_the_results_files(results):
    md_path, html_path, rep_path = build_report(results)
    md = md_path.read_text()
    assert fmt(0.987654321) == "0.9877" and "0.9877" in md
    assert "1.500e-05" in md  # the D6 number, formatted, not typed
    assert "**Our result. Verdict: not reproduced.**" in md
    # a record without a rule history takes the sources module's: D6's rule was revised after results
    assert "Rule (revised after results, commit 081cdf2: " in md and "): confirmed if rho > 0.99" in md
    assert md.index("## D2") < md.index("## D4") < md.index("## D6")  # the paper's order
    html = html_path.read_text()
    assert "data:image/png;base64," in html  # self-contained: the figure is embedded
    assert "<script" not in html
    rep = rep_path.read_text()
    assert "`geoae reproduce --profile quick --only D2`" in rep and "training 240 core-s + analysis 12 s" in rep


def test_failed_experiment_is_reported_as_failed(results):
    md = build_report(results)[0].read_text()
    assert "Verdict: FAILED" in md and "RuntimeError: boom" in md
    assert "| D4 |  | failed |" in md


def test_unreadable_results_file_is_a_failure_not_a_crash(results):
    (results / "D7").mkdir()
    (results / "D7" / "results.json").write_text("{not json")
    recs = {r["id"]: r for r in load_results(results)}
    assert recs["D7"]["status"] == "failed"
    assert "FAILED" in build_report(results)[0].read_text()


def test_reproduce_md_written_where_asked(results, tmp_path):
    target = tmp_path / "elsewhere" / "REPRODUCE.md"
    target.parent.mkdir()
    build_report(results, reproduce_md=target)
    assert target.read_text() == (results / "REPRODUCE.md").read_text()
    assert json.loads((results / "D2" / "results.json").read_text())["numbers"]["n_runs"] == 3


def test_headline_follows_the_experiments_order_and_pipes_are_escaped(tmp_path):
    rec = _ok("D1", 0.25) | {"number_order": ["n_runs", "spearman_rho"]}
    rec["descriptions"]["n_runs"] = "runs | seeds"
    write_json(tmp_path / "D1" / "results.json", rec)
    md = build_report(tmp_path)[0].read_text()
    assert "| D1 | title D1 | confirmed |  | n_runs = 3 |" in md
    assert "runs \\| seeds" in md


def test_provenance_paper_authors_and_commit(tmp_path):
    """The paper column holds the paper's statement only; the authors' model has its own column; REPRODUCE.md
    names the commit of its results."""
    rec = _ok("D1", 0.004) | {"source": {"tags": ["ICLR 2018 §3.2"], "says": "the paper says disks are reconstructed"},
                              "reading_short": "the thresholds",
                              "authors": {"authors_mse": {"value": 0.002, "description": "their model's MSE"}}}
    write_json(tmp_path / "D1" / "results.json", rec)
    write_json(tmp_path / "D2" / "results.json", _ok("D2", 0.9))
    md, _, rep = (p.read_text() for p in build_report(tmp_path))
    assert "results of commit `abc123`" in rep
    row = next(line for line in rep.splitlines() if line.startswith("| D1 | — |"))  # the per-claim table
    cells = [c.strip() for c in row.split(" | ")]
    assert cells[-2] == "The paper says disks are reconstructed" and cells[-1].rstrip(" |") == "authors_mse = 0.002"
    assert cells[2] == "ICLR 2018 §3.2" and cells[3] == "the thresholds"
    assert "spearman_rho = 0.004" in cells[6] and "0.002" not in cells[6]
    assert "**Control.** a shuffled code" in md and "their model's MSE" in md
    d2_row = next(line for line in rep.splitlines() if line.startswith("| D2 | — |"))
    assert d2_row.endswith("|  |")  # no authors' number for D2 here


def test_mixed_commits_are_named(tmp_path):
    write_json(tmp_path / "D1" / "results.json", _ok("D1", 0.1))
    write_json(tmp_path / "D2" / "results.json", _ok("D2", 0.1) | {"git_commit": "def456"})
    rep = build_report(tmp_path)[2].read_text()
    assert "`abc123` (1 claims)" in rep and "`def456` (1 claims)" in rep


def test_another_profile_is_compared(tmp_path):
    quick, paper = tmp_path / "quick", tmp_path / "paper"
    order = {"number_order": ["spearman_rho", "n_runs"]}
    write_json(quick / "D1" / "results.json", _ok("D1", 0.1, verdict="partly") | order)
    write_json(quick / "D2" / "results.json", _ok("D2", 0.2))
    write_json(paper / "D1" / "results.json", _ok("D1", 0.05) | order | {"profile": "paper"})
    md, _, rep = (p.read_text() for p in build_report(quick, compare=paper))
    assert "| D1 | title D1 | partly |  | spearman_rho = 0.1 | confirmed (spearman_rho = 0.05) |" in md
    assert "| paper profile |" in md and "not run" in md
    assert any(line.startswith("| claim |") and line.endswith("| paper profile |") for line in rep.splitlines())


def test_each_claim_has_source_reading_and_result_and_the_report_opens_with_the_sources(tmp_path):
    rec = _ok("D2", 0.9) | {"source": {"tags": ["ICLR 2018 §3.2.1"], "says": "z seems area-like"},
                            "reading": ["the growth exponent", "its threshold"],
                            "rule_history": {"set_at": "1234567", "revised_after_results": ""}}
    write_json(tmp_path / "D2" / "results.json", rec)
    md, html, _ = (p.read_text() for p in build_report(tmp_path))
    assert md.index("**Sources.**") < md.index("## D2")
    assert "The body of the JMIV paper" in md and "P1–P3 are our readings" in md
    section = md[md.index("## D2"):]
    assert section.index("**What the source says** (ICLR 2018 §3.2.1). Z seems area-like") \
        < section.index("**Our reading**") < section.index("- the growth exponent") < section.index("**Our result.")
    assert "Rule (set at commit 1234567): confirmed if rho > 0.99" in section
    assert "<b>What the source says</b> (ICLR 2018 §3.2.1)" in html and "<li>its threshold</li>" in html
    assert "Rule (set at commit 1234567)" in html


def test_rule_revised_after_results_and_rule_not_yet_committed(tmp_path):
    revised = {"set_at": "abcdef1", "revised_after_results": "threshold moved after 0.54 px was seen"}
    write_json(tmp_path / "D6" / "results.json", _ok("D6", 0.1) | {"rule_history": revised})
    pending = {"set_at": "", "revised_after_results": ""}
    write_json(tmp_path / "D7" / "results.json", _ok("D7", 0.1) | {"rule_history": pending, "git_commit": "fedcba9876"})
    md = build_report(tmp_path)[0].read_text()
    assert "Rule (revised after results, commit abcdef1: threshold moved after 0.54 px was seen)" in md
    assert "Rule (set at commit fedcba9, the results' commit)" in md


def test_inconclusive_is_a_verdict_with_a_neutral_badge(tmp_path):
    from geoae.report import BADGE

    write_json(tmp_path / "D7" / "results.json", _ok("D7", 0.35, verdict="inconclusive"))
    rec = load_results(tmp_path)[0]
    assert rec["status"] == "ok" and rec["verdict"] == "inconclusive"
    html = build_report(tmp_path)[1].read_text()
    assert f'style="background:{BADGE["inconclusive"]}">inconclusive<' in html
    assert BADGE["inconclusive"] not in (BADGE["confirmed"], BADGE["not reproduced"], BADGE["partly"])


def test_malformed_source_fields_are_refused(tmp_path):
    write_json(tmp_path / "D1" / "results.json", _ok("D1", 0.1) | {"source": "ICLR"})
    write_json(tmp_path / "D2" / "results.json", _ok("D2", 0.1) | {"reading": "one reading"})
    recs = {r["id"]: r for r in load_results(tmp_path)}
    assert recs["D1"]["status"] == "failed" and "source is not" in recs["D1"]["error"]
    assert recs["D2"]["status"] == "failed" and "reading is not" in recs["D2"]["error"]


def test_verdicts_per_recipe_and_the_claims_that_depend_on_it(tmp_path):
    for recipe, verdict in (("iclr2018", "confirmed"), ("released", "not reproduced")):
        write_json(tmp_path / "D6" / recipe / "results.json", _ok("D6", 0.5, verdict=verdict)
                   | {"recipe": recipe, "recipe_detail": {"title": f"the {recipe} set-up", "choices": {"lr": "x"}}})
        write_json(tmp_path / "D1" / recipe / "results.json", _ok("D1", 0.1) | {"recipe": recipe})
    write_json(tmp_path / "P1" / "results.json", _ok("P1", 0.0))
    md, html, rep = (p.read_text() for p in build_report(tmp_path))
    head = next(line for line in md.splitlines() if line.startswith("| claim |"))
    assert head.startswith("| claim | title | verdict: iclr2018 | verdict: released | verdict | depends on the "
                           "recipe |")
    assert ("| D6 | title D6 | confirmed | not reproduced |  | yes: iclr2018: confirmed; released: not reproduced |"
            in md)
    assert "| D1 | title D1 | confirmed | confirmed |  | no |" in md and "| P1 | title P1 | — | — | confirmed |" in md
    assert "**Verdicts that depend on the recipe:** D6 (iclr2018: confirmed; released: not reproduced)." in md
    assert "## D6: title D6 (recipe released)" in md and "the released set-up" in md and "## Recipes" in md
    assert "geoae reproduce --profile quick --only D6 --recipe released" in rep
    assert rep.count("| D6 | iclr2018 |") == 1 and rep.count("| D6 | released |") == 1
    assert 'id="D6/released"' in html and "Verdicts that depend on the recipe" in html


def test_a_record_in_another_recipes_folder_is_reported_failed(tmp_path):
    write_json(tmp_path / "D6" / "released" / "results.json", _ok("D6", 0.5) | {"recipe": "iclr2018"})
    md = build_report(tmp_path)[0].read_text()
    assert "malformed D6/released/results.json (its recipe is 'iclr2018', not 'released'" in md


@pytest.mark.parametrize("width", [1280, 390])
def test_the_report_fits_the_screen_and_its_wide_tables_scroll_within_themselves(tmp_path, browser, width):
    """No sideways scroll of the page on a laptop or a phone (390 px): wide tables scroll in their own box, long
    words wrap; the contents bar and the way back to the top are there. Screenshots in test-artifacts/."""
    wide = _ok("D7", 0.5) | {"recipe": "released", "tables": [{
        "title": "a wide table", "columns": [f"column number {k} with a long name" for k in range(14)],
        "rows": [[f"value_{k}_without_spaces_{'x' * 30}" for k in range(14)]]}],
        "notes": "a_very_long_identifier_" * 12, "figures": []}
    write_json(tmp_path / "D7" / "released" / "results.json", wide)
    write_json(tmp_path / "D2" / "results.json", _ok("D2", 0.9) | {"figures": []})
    page = build_report(tmp_path)[1]
    browser.set_window_size(width, 844)
    browser.get(page.as_uri())
    doc_width = browser.execute_script("return document.documentElement.scrollWidth")
    view = browser.execute_script("return document.documentElement.clientWidth")
    assert doc_width <= view + 1, (doc_width, view)
    scrolls = browser.execute_script(
        "return [...document.querySelectorAll('div.scroll')].some(d => d.scrollWidth > d.clientWidth + 1)")
    assert scrolls or width > 900  # on a phone the wide table scrolls inside its box
    assert browser.execute_script("return document.querySelectorAll('nav.toc a').length") == 2
    assert browser.execute_script("return document.querySelectorAll(\"a[href='#top']\").length") == 2
    artifacts = Path(__file__).resolve().parent.parent / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    browser.save_screenshot(str(artifacts / f"report-{width}px.png"))
