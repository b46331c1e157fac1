"""The report: every claim of the paper with our numbers and a verdict, built from the results files.

Nothing here computes or types a number: each value is read from ``<out>/<ID>/results.json``. Three files
are written (atomically): ``report.md``, ``report.html`` (self-contained: the PNG figures are embedded,
so it opens from disk in any browser) and ``REPRODUCE.md`` (per claim: the command, the runtime, our
number, the verdict, what the paper states, and our measurement of the authors' released model).

Provenance: each claim has three labelled parts. *What the source says* is one of the three known texts, with
its tag (``experiments/sources.py``, copied into the results file as ``source``); *our reading* is every choice
no source makes (``reading``); *our result* is our number, the verdict, and the rule with its history
(``rule_history``: the commit that set it, and whether it was revised after results had been seen). A results
file written before these fields existed is shown with the sources module's current entries. Numbers measured
on the authors' released model are in their own column (``authors``). REPRODUCE.md names the commit(s) its
results were produced by.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from urllib.parse import quote

from .experiments import sources
from .experiments.registry import IDS as EXPERIMENT_ORDER

BADGE = {"confirmed": "#2e7d32", "partly": "#ef6c00", "not reproduced": "#c62828", "inconclusive": "#546e7a",
         "measured": "#1565c0",
         "failed": "#555"}
PAPER_REF = ("Newson, Almansa, Gousseau, Ladjal, *Processing Simple Geometric Attributes with Autoencoders*, "
             "JMIV 62, 293-312 (2020)")


OFFICIAL_HINT = ("The comparison with the authors' released model was skipped. To include it, install h5py "
                 "(`pip install geoae[keras]`) and run `geoae reproduce --only D1,D2 --official-weights "
                 "PATH/disk_example_model_weights.h5` (or set GEOAE_OFFICIAL_WEIGHTS).")


def lacks_official_comparison(rec: dict) -> bool:
    """True for a finished D1 / D2 record without the numbers of the authors' model (its ``authors`` field;
    ``official_*`` numbers in results files of earlier versions)."""
    return rec.get("id") in ("D1", "D2") and rec.get("status") == "ok" and not rec.get("authors") and \
        not any(k.startswith("official_") for k in rec.get("numbers", {}))


def record_dir(rec: dict) -> str:
    """The record's folder under the results directory: ``D6/released`` for a claim run under a recipe, ``P1``."""
    return f"{rec['id']}/{rec['recipe']}" if rec.get("recipe") else str(rec["id"])


def _result_paths(out: Path, exp_id: str) -> list[tuple[Path, str | None]]:
    """``<out>/<ID>/results.json`` and ``<out>/<ID>/<recipe>/results.json`` (recipes in their own order)."""
    from .recipes import NAMES

    return [(p, r) for p, r in [(out / exp_id / "results.json", None)]
            + [(out / exp_id / name / "results.json", name) for name in NAMES] if p.exists()]


def load_results(out: Path) -> list[dict]:
    """All results files under ``out``, in the order of the paper's claims (each claim's recipes in their order).
    A file the report cannot show (unreadable, not JSON, not a record of that claim, a field of the wrong type,
    a figure outside the claim's directory) becomes a failed record that says what is wrong with it: the
    report is still built."""
    records = []
    for exp_id in EXPERIMENT_ORDER:
        for path, recipe in _result_paths(Path(out), exp_id):
            where = exp_id if recipe is None else f"{exp_id}/{recipe}"
            try:
                rec = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:  # ValueError: not UTF-8, not JSON
                rec = {"id": exp_id, "status": "failed", "error": f"unreadable results.json: {err}"}
            if isinstance(rec, dict) and rec.get("recipe") != recipe:
                problem = f"its recipe is {rec.get('recipe')!r}, not {recipe!r} as its folder says"
            else:
                try:
                    problem = malformed(rec, exp_id, Path(out))
                except Exception as err:  # noqa: BLE001 - whatever a hand-edited file holds, it is one failed record
                    problem = f"{type(err).__name__}: {err}"
            if problem:
                rec = {"id": exp_id, "status": "failed", "error": f"malformed {where}/results.json ({problem}); "
                       f"re-run `geoae reproduce --only {exp_id}` to redo it"}
                if recipe is not None:
                    rec["recipe"] = recipe
            records.append(rec)
    return records


_TEXT_FIELDS = ("title", "claim", "paper", "error", "rule", "notes", "profile", "git_commit", "reading_short",
                "control", "kind", "recipe")
_NUMBER_FIELDS = ("runtime_s", "train_core_s")


def malformed(rec, exp_id: str, out: Path) -> str | None:
    """What makes ``rec`` unfit for the report (None: nothing): the fields the report shows must have their
    types, every figure must be a file inside ``out/<ID>/`` (no absolute path, no ``..``, no link out, no NUL),
    and the record's sections (markdown, REPRODUCE.md, HTML) must render."""
    if not isinstance(rec, dict):
        return f"a JSON {type(rec).__name__}, not an object"
    if rec.get("id") != exp_id:
        return f"its id is {rec.get('id')!r}, not {exp_id!r}"
    bad = [k for k in _TEXT_FIELDS if k in rec and not isinstance(rec[k], str)]
    bad += [k for k in _NUMBER_FIELDS if rec.get(k) is not None and (type(rec[k]) not in (int, float)
                                                                     or not math.isfinite(rec[k]))]
    if bad:
        return f"{bad[0]} is not {'text' if bad[0] in _TEXT_FIELDS else 'a finite number'}"
    if any("\0" in v for k in _TEXT_FIELDS if isinstance(v := rec.get(k), str)):
        return "a text field holds a NUL character"
    if rec.get("status") == "ok":
        problem = _malformed_result(rec, exp_id, out)
        if problem:
            return problem
    try:
        _md_section(rec)  # anything else the sections read
        build_reproduce_md([rec])
        _html_section(rec, out)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OSError) as err:
        return f"{type(err).__name__}: {err}"
    return None


def _malformed_result(rec: dict, exp_id: str, out: Path) -> str | None:
    """``malformed`` for a finished experiment's record: verdict, rule, numbers, tables and figures."""
    if rec.get("verdict") not in BADGE or rec["verdict"] == "failed":
        return f"verdict {rec.get('verdict')!r} is not one of {', '.join(k for k in BADGE if k != 'failed')}"
    if not isinstance(rec.get("rule"), str):
        return "no rule"
    for key in ("numbers", "descriptions"):
        if not isinstance(rec.get(key), dict):
            return f"{key} is not an object"
    if not all(isinstance(v, str) for v in rec["descriptions"].values()):
        return "a description is not text"
    src = rec.get("source")
    if src is not None and not (isinstance(src, dict) and isinstance(src.get("says"), str)
                                and isinstance(src.get("tags"), list) and all(isinstance(t, str) for t in src["tags"])):
        return "source is not {tags: [text], says: text}"
    if "reading" in rec and not (isinstance(rec["reading"], list) and all(isinstance(r, str) for r in rec["reading"])):
        return "reading is not a list of text"
    hist = rec.get("rule_history")
    if hist is not None and not (isinstance(hist, dict) and all(isinstance(v, str) for v in hist.values())):
        return "rule_history is not {set_at: text, revised_after_results: text}"
    tables = rec.get("tables", [])
    if not isinstance(tables, list) or not all(
            isinstance(t, dict) and isinstance(t.get("columns"), list) and all(isinstance(c, str) for c in t["columns"])
            and isinstance(t.get("title", ""), str)
            and isinstance(t.get("rows"), list) and all(isinstance(r, list) for r in t["rows"]) for t in tables):
        return "tables are not a list of {title (text), columns, rows}"
    figures = rec.get("figures", [])
    if not isinstance(figures, list) or not all(isinstance(f, str) for f in figures):
        return "figures are not a list of file names"
    if any("\0" in f for f in figures):
        return "a figure name holds a NUL character"
    home = (out / record_dir(rec)).resolve()
    outside = [f for f in figures if not (home / f).resolve().is_relative_to(home)]
    if outside:
        return f"figure {outside[0]!r} lies outside {record_dir(rec)}/"
    return None


BEYOND_INTRO = ("Beyond the paper: the experiments below test our own predictions (ICLR 2018 Prop. 2 carried to "
                "other dimensions, radius densities and shapes), not claims of the paper; their rules were written "
                "before their runs.")


def is_beyond(rec: dict) -> bool:
    """A record of an experiment beyond the paper (``registry.Experiment.paper_claim`` False)."""
    return rec.get("paper_claim") is False


def claim_label(rec: dict) -> str:
    return "Our prediction (beyond the paper)" if is_beyond(rec) else "The claim, as we test it"


def source_of(rec: dict) -> dict:
    """{'tags', 'says'} of the record (the sources module's current entry for a record without one)."""
    src = rec["source"] if isinstance(rec.get("source"), dict) else None
    if src is None:
        entry = sources.CLAIMS.get(rec.get("id"))
        src = {"tags": list(entry.tags), "says": entry.says} if entry else {"tags": [], "says": ""}
    return src | {"says": src["says"][:1].upper() + src["says"][1:]}  # a sentence after the tags


def readings_of(rec: dict) -> list[str]:
    if "reading" in rec:
        return list(rec["reading"])
    return sources.readings(rec["id"]) if rec.get("id") in sources.CLAIMS else []


def reading_short_of(rec: dict) -> str:
    return rec.get("reading_short") or sources.READING_SHORT.get(rec.get("id"), "")


def tags_text(rec: dict) -> str:
    """The source tags, '; '-joined ('no source: our prediction' for a claim no source makes)."""
    return "; ".join(source_of(rec)["tags"]) or "no source: our prediction"


def statement_of(rec: dict) -> str:
    """The one-line statement of the source (``paper`` of the record, else the sources module's)."""
    if isinstance(rec.get("source"), dict) and rec.get("paper"):
        return rec["paper"]
    return sources.statement(rec["id"]) if rec.get("id") in sources.CLAIMS else (rec.get("paper") or "")


def rule_label_of(rec: dict) -> str:
    """'Rule (set at commit X)' or 'Rule (revised after results, commit X: why)'."""
    hist = rec.get("rule_history")
    if not isinstance(hist, dict):
        hist = sources.rule_history(rec["id"]) if rec.get("id") in sources.CLAIMS else None
    return sources.rule_label(hist, rec.get("git_commit"))


def theorem_note(rec: dict) -> str:
    if is_beyond(rec):
        return "This prediction is a statement of the theory: it is checked numerically, no network is trained."
    return "This claim is a theorem: part of what is measured holds by construction (an implementation check)."


def fmt(value) -> str:
    """A number as the report prints it: 4 significant digits, scientific when small or large."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        a = abs(value)
        return f"{value:.3e}" if (a != 0 and (a < 1e-3 or a >= 1e5)) else f"{value:.4g}"
    return str(value)


def numbers_of(rec: dict) -> list[tuple[str, object]]:
    """(name, value) pairs in the experiment's own order (its first number is the headline)."""
    numbers = rec.get("numbers", {})
    order = [k for k in rec.get("number_order", []) if k in numbers]
    return [(k, numbers[k]) for k in order + [k for k in numbers if k not in order]]


def md(text) -> str:
    """Text of a results file as markdown shows it, never as markup: ``<`` (which opens an HTML tag or an
    autolink) as ``&lt;``, ``](`` (which makes a link or an image) escaped, backticks (code) as quotes."""
    return str(text).replace("<", "&lt;").replace("](", "]\\(").replace("`", "'")


def code(text) -> str:
    """Text shown as a markdown code span: in backticks where it holds no backtick, ``<``, ``|`` nor line
    break, else as escaped text (``cell``)."""
    text = str(text)
    return f"`{text}`" if not any(c in text for c in "`<|\n") else cell(text)


def cell(text) -> str:
    """Text safe inside a markdown table cell (``md``, and no ``|`` nor line break)."""
    return md(text).replace("|", "\\|").replace("\n", " ")


def status_of(rec: dict) -> str:
    return rec.get("verdict", "failed") if rec.get("status") == "ok" else "failed"


def runtime_of(rec: dict) -> str:
    """'training T core-s + analysis A s': runs train one per core, so T / cores is their wall-clock time."""
    train_s = rec.get("train_core_s")
    run_s = f"{rec.get('runtime_s', 0):.0f} s"
    return f"training {train_s:.0f} core-s + analysis {run_s}" if train_s else run_s


def authors_of(rec: dict) -> str:
    """Our measurements of the authors' released model, 'name = value; …' ('' when none)."""
    return "; ".join(f"{k} = {fmt(v['value'])}" for k, v in rec.get("authors", {}).items())


def commits_of(records: list[dict]) -> str:
    """The git commit(s) the results were produced by, most frequent first."""
    counts: dict[str, int] = {}
    for rec in records:
        c = rec.get("git_commit") or "unknown"
        counts[c] = counts.get(c, 0) + 1
    return ", ".join(code(c) + (f" ({n} claims)" if len(counts) > 1 else "")
                     for c, n in sorted(counts.items(), key=lambda t: -t[1]))


def command_for(rec: dict) -> str:
    profile = rec.get("profile", "quick")
    recipe = f" --recipe {rec['recipe']}" if rec.get("recipe") else ""
    return f"geoae reproduce --profile {profile} --only {rec['id']}{recipe}"


def run_folders_text(rec: dict, most: int = 8) -> str:
    """'N runs: a, b, … and K more' from the record's ``run_folders`` ('' when it has none)."""
    folders = rec.get("run_folders")
    if not isinstance(folders, dict) or not folders:
        return ""
    paths = sorted(set(map(str, folders.values())))
    more = f" and {len(paths) - most} more (all in results.json)" if len(paths) > most else ""
    return f"{len(paths)} runs: " + ", ".join(paths[:most]) + more


def banner(records: list[dict]) -> str:
    """Profile(s), recipes, seeds and commit(s) of the results, in one line."""
    profiles = sorted({str(r.get("profile", "?")) for r in records})
    recipes = list(dict.fromkeys(r["recipe"] for r in records if r.get("recipe")))
    seeds = sorted({len(r.get("seeds") or []) for r in records})
    note = " (a smoke test: its numbers mean nothing)" if profiles == ["tiny"] else ""
    commits = sorted({str(r.get("git_commit") or "unknown") for r in records})
    return (f"Profile {', '.join(profiles)}{note} · recipes {', '.join(recipes) or 'none'} · seeds per claim "
            f"{', '.join(map(str, seeds))} · commit {', '.join(commits)}")


def recipe_note(rec: dict) -> str:
    """' (recipe released)' for a claim run under a recipe, '' otherwise."""
    return f" (recipe {rec['recipe']})" if rec.get("recipe") else ""


def fmt_interval(rec: dict, name: str, value) -> str:
    """A number with its bootstrap interval over seeds and its seed spread when the record gives them
    (``intervals``: {name: [lo, hi, std]})."""
    iv = rec.get("intervals", {}).get(name) if isinstance(rec.get("intervals"), dict) else None
    if isinstance(iv, list) and len(iv) == 3 and all(isinstance(x, int | float) for x in iv):
        return f"{fmt(value)} [{fmt(iv[0])}, {fmt(iv[1])}] (sd {fmt(iv[2])})"
    return fmt(value)


def headline_of(rec: dict) -> str:
    """The first number of a finished record, 'name = value [interval] (sd)' when the record has its interval."""
    if rec.get("status") != "ok" or not rec.get("numbers"):
        return ""
    k, v = numbers_of(rec)[0]
    return f"{k} = {fmt_interval(rec, k, v)}"


def verdict_table(records: list[dict]) -> tuple[list[str], list[list[str]], list[str]]:
    """(columns, rows, dependent): one row per claim, one verdict column per recipe (and one for the claims that
    follow no recipe), whether the verdict depends on the recipe, the headline(s); ``dependent`` lists the claims
    whose verdicts differ between recipes, as 'D6 (iclr2018: …; released: …)'."""
    recipes = list(dict.fromkeys(r["recipe"] for r in records if r.get("recipe")))
    plain = any(not r.get("recipe") for r in records)
    by_id: dict[str, list[dict]] = {}
    for rec in records:
        by_id.setdefault(rec["id"], []).append(rec)
    columns = ["claim", "title"] + [f"verdict: {r}" for r in recipes] + (["verdict"] if plain else [])
    columns += ["depends on the recipe", "headline number"]
    rows, dependent = [], []
    for exp_id, recs in by_id.items():
        per = {rec.get("recipe"): rec for rec in recs}
        cells = [exp_id, recs[0].get("title", "")]
        cells += [status_of(per[r]) if r in per else ("—" if None in per else "not run") for r in recipes]
        if plain:
            cells.append(status_of(per[None]) if None in per else "")
        verdicts = {r: status_of(rec) for r, rec in per.items() if r is not None}
        if len(verdicts) < 2:
            depends = "" if not verdicts else f"only {', '.join(verdicts)} run"
        elif len(set(verdicts.values())) == 1:
            depends = "no"
        else:
            depends = "yes: " + "; ".join(f"{r}: {v}" for r, v in verdicts.items())
            dependent.append(f"{exp_id} ({'; '.join(f'{r}: {v}' for r, v in verdicts.items())})")
        heads = [(f"{r}: " if r else "") + headline_of(rec) for r, rec in per.items() if headline_of(rec)]
        rows.append(cells + [depends, " · ".join(heads)])
    return columns, rows, dependent


def recipes_section(records: list[dict]) -> list[str]:
    """Markdown: each recipe the records ran under, item by item, with where each item comes from."""
    details = {}
    for rec in records:
        if isinstance(rec.get("recipe_detail"), dict):
            details.setdefault(rec["recipe"], rec["recipe_detail"])
    if not details:
        return []
    lines = ["## Recipes", "", "The disk claims run under each recipe below (`geoae.recipes`); where a source is "
             "silent, the choice is ours and says so. Every recipe's run sees the same number of images.", ""]
    for name, d in details.items():
        lines += [f"**{cell(name)}**: {md(d.get('title', ''))} (source: {md(d.get('source', ''))}); "
                  f"{md(d.get('arch', ''))}, α {fmt(d.get('alpha'))}, {md(d.get('rendering', ''))} disks "
                  f"{fmt(d.get('size'))} × {fmt(d.get('size'))}, lr {fmt(d.get('lr'))}, batch "
                  f"{fmt(d.get('batch_size'))}, {fmt(d.get('paper_iterations'))} iterations (paper profile), kept "
                  f"weights: {md(d.get('keep', ''))}.", ""]
        choices = d.get("choices") or {}
        if isinstance(choices, dict) and choices:
            lines += ["| item | value and where it comes from |", "|---|---|"]
            lines += [f"| {cell(k)} | {cell(v)} |" for k, v in choices.items()]
            lines.append("")
        for dev in d.get("deviations") or []:
            lines.append(f"- {md(dev)}")
        lines.append("")
    return lines


# ------------------------------------------------------------------------------------------ markdown


def _md_table(table: dict) -> list[str]:
    lines = [f"*{cell(table.get('title', ''))}*", "", "| " + " | ".join(cell(c) for c in table["columns"]) + " |",
             "|" + "---|" * len(table["columns"])]
    lines += ["| " + " | ".join(cell(fmt(v)) for v in row) + " |" for row in table["rows"]]
    return lines + [""]


def _md_section(rec: dict) -> list[str]:
    lines = [f"## {rec['id']}: {md(rec.get('title', ''))}{md(recipe_note(rec))}", ""]
    if rec.get("claim"):
        lines += [f"**{claim_label(rec)}.** {md(rec['claim'])}", ""]
    src = source_of(rec)
    lines += [f"**What the source says** ({md(tags_text(rec))}). {md(src['says'])}", ""]
    reading = readings_of(rec)
    if reading:
        lines += ["**Our reading** (choices no source makes):", ""] + [f"- {md(r)}" for r in reading] + [""]
    if rec.get("status") != "ok":
        return lines + ["**Our result. Verdict: FAILED.** The experiment raised an error:", "", "```",
                        str(rec.get("error", "unknown error")).replace("`", "'"), "```", ""]
    lines += [f"**Our result. Verdict: {rec['verdict']}.** {md(rule_label_of(rec))}: {md(rec['rule'])}", ""]
    if rec.get("control"):
        lines += [f"**Control.** {md(rec['control'])}", ""]
    if rec.get("kind") == "theorem":
        lines += [f"*{theorem_note(rec)}*", ""]
    lines += ["| measured | value | what it is |", "|---|---|---|"]
    lines += [f"| {code(k)} | {cell(fmt_interval(rec, k, v))} | {cell(rec['descriptions'].get(k, ''))} |"
              for k, v in numbers_of(rec)]
    lines.append("")
    if rec.get("authors"):
        lines += ["*The authors' released model, measured by us:*", "", "| measured | value | what it is |",
                  "|---|---|---|"]
        lines += [f"| {code(k)} | {cell(fmt(v['value']))} | {cell(v['description'])} |"
                  for k, v in rec["authors"].items()]
        lines.append("")
    for table in rec.get("tables", []):
        lines += _md_table(table)
    if rec.get("notes"):
        lines += [f"*Notes.* {md(rec['notes'])}", ""]
    if lacks_official_comparison(rec):
        lines += [f"**Authors' model: not compared.** {OFFICIAL_HINT}", ""]
    lines += [f"![{md(f)}]({quote(record_dir(rec))}/{quote(f)})" for f in rec.get("figures", [])]
    folders = run_folders_text(rec)
    if folders:
        lines += ["", f"*Run folders* ({md(folders)})."]
    lines += ["", f"Profile {code(rec['profile'])}, seeds {md(rec['seeds'])}, runtime: {runtime_of(rec)}, "
              f"commit {code(rec.get('git_commit', 'unknown'))}.", ""]
    return lines


def compared(records: list[dict], others: list[dict] | None) -> dict[str, str]:
    """{claim id: 'verdict(s) (headline)'} of another profile's results, for the claims of ``records`` (a claim
    run under recipes: 'recipe: verdict' for each)."""
    if not others:
        return {}
    by_id: dict[str, list[dict]] = {}
    for rec in others:
        by_id.setdefault(rec["id"], []).append(rec)
    out = {}
    for exp_id in dict.fromkeys(rec["id"] for rec in records):
        recs = by_id.get(exp_id)
        out[exp_id] = "not run" if not recs else "; ".join(
            (f"{r['recipe']}: " if r.get("recipe") else "") + status_of(r)
            + (f" ({headline_of(r)})" if headline_of(r) else "") for r in recs)
    return out


def _profile_of(records: list[dict]) -> str:
    return ", ".join(sorted({str(rec.get("profile", "?")) for rec in records})) or "?"


def _verdict_lines(records: list[dict], other: dict[str, str], label: str = "other profile") -> list[str]:
    columns, rows, dependent = verdict_table(records)
    lines = ["| " + " | ".join(columns) + (f" | {label} |" if other else " |"),
             "|" + "---|" * (len(columns) + bool(other))]
    lines += ["| " + " | ".join(cell(c) for c in row) + (f" | {cell(other.get(row[0], ''))} |" if other else " |")
              for row in rows]
    lines += ["", "**Verdicts that depend on the recipe:** " + ("; ".join(dependent) if dependent else "none") + ".",
              ""]
    return lines


def build_markdown(records: list[dict], others: list[dict] | None = None) -> str:
    other = compared(records, others)
    lines = ["# geoae report: the paper's claims, measured", "", f"**{md(banner(records))}**", "",
             f"Paper: {PAPER_REF}.", "", f"**Sources.** {sources.SOURCES_PARAGRAPH}", "",
             "Every number below is read from the experiment's `results.json`; every verdict follows the rule "
             "written next to it, with the commit that set it.", ""]
    lines += _verdict_lines(records, other, f"{_profile_of(others)} profile" if others else "")
    lines += recipes_section(records)
    for k, rec in enumerate(records):
        if is_beyond(rec) and (k == 0 or not is_beyond(records[k - 1])):
            lines += ["---", "", f"**{BEYOND_INTRO}**", ""]
        lines += _md_section(rec)
    return "\n".join(lines) + "\n"


def build_reproduce_md(records: list[dict], others: list[dict] | None = None) -> str:
    profiles = sorted({rec.get("profile", "?") for rec in records})
    seeds = sorted({str(rec.get("seeds")) for rec in records})
    total = sum(rec.get("train_core_s") or 0 for rec in records)
    lines = ["# Reproducing the paper with geoae", "",
             f"Generated by `geoae report --reproduce-md` from the results of commit {commits_of(records)}, profile "
             f"{', '.join(profiles)}, seeds {', '.join(seeds)}; do not edit by hand.",
             "Runtime: the training time of the claim's runs in core-seconds (each run trains on one core; "
             "`reproduce` trains them on one worker per core, and runs shared between claims are trained "
             f"once and counted for each; {total:.0f} core-s summed over claims) plus the analysis time, measured "
             "on the machine that produced the results. *Source* is the text the claim rests on (tags as in "
             "SOURCES.md: the JMIV body was never available); *the source says* is its statement; *our reading* "
             "names the choices no source makes; *authors' model* is our measurement of the authors' released "
             "model.", "",
             "The verdicts, one column per recipe (the disk claims run under the two sources' recipes):", ""]
    lines += _verdict_lines(records, {})
    lines += ["| claim | recipe | source | our reading | command | runtime | our number (headline first) | seeds | "
              "verdict | the source says | authors' model |" + (f" {_profile_of(others)} profile |" if others else ""),
              "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if others else "")]
    other = compared(records, others)
    for rec in records:
        ours = ""
        if rec.get("status") == "ok":
            ours = "; ".join(f"{k} = {fmt_interval(rec, k, v)}" for k, v in numbers_of(rec)[:3])
        paper = cell(source_of(rec)["says"])
        lines.append(f"| {rec['id']} | {cell(rec.get('recipe') or '—')} | {cell(tags_text(rec))} | "
                     f"{cell(reading_short_of(rec))} | {code(command_for(rec))} | {runtime_of(rec)} | {cell(ours)} | "
                     f"{cell(len(rec.get('seeds') or []))} | {status_of(rec)} | {paper} | {cell(authors_of(rec))} |"
                     + (f" {cell(other.get(rec['id'], ''))} |" if other else ""))
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------------- html


def _img_tag(home: Path, name: str) -> str:
    """The figure ``name`` of the claim directory ``home``, embedded; never a file outside ``home``."""
    path = (home / name).resolve()
    if not path.is_relative_to(home.resolve()):
        return f"<p><em>figure {html.escape(name)} refused: outside {html.escape(home.name)}/</em></p>"
    if not path.is_file():
        return f"<p><em>missing figure {html.escape(name)}</em></p>"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}"></figure>'


def _html_section(rec: dict, out: Path) -> str:
    e = html.escape
    status = status_of(rec)
    parts = [f'<section id="{e(record_dir(rec))}"><h2>{e(rec["id"])}: {e(rec.get("title", ""))}{e(recipe_note(rec))} '
             f'<span class="badge" style="background:{BADGE[status]}">{e(status)}</span></h2>']
    if rec.get("claim"):
        parts.append(f"<p><b>{e(claim_label(rec))}.</b> {e(rec['claim'])}</p>")
    parts.append(f"<p><b>What the source says</b> ({e(tags_text(rec))}). {e(source_of(rec)['says'])}</p>")
    reading = readings_of(rec)
    if reading:
        parts.append("<p><b>Our reading</b> (choices no source makes):</p><ul>"
                     + "".join(f"<li>{e(r)}</li>" for r in reading) + "</ul>")
    if rec.get("status") != "ok":
        parts.append(f"<p><b>Our result: FAILED.</b></p><pre>{e(rec.get('error', 'unknown error'))}</pre></section>")
        return "\n".join(parts)
    parts.append(f"<p><b>Our result.</b> {e(rule_label_of(rec))}: {e(rec['rule'])}</p>")
    if rec.get("control"):
        parts.append(f"<p><b>Control.</b> {e(rec['control'])}</p>")
    rows = "".join(f"<tr><td><code>{e(k)}</code></td><td>{e(fmt_interval(rec, k, v))}</td><td>"
                   f"{e(rec['descriptions'].get(k, ''))}"
                   "</td></tr>" for k, v in numbers_of(rec))
    parts.append(f"<table><tr><th>measured</th><th>value</th><th>what it is</th></tr>{rows}</table>")
    if rec.get("authors"):
        rows = "".join(f"<tr><td><code>{e(k)}</code></td><td>{e(fmt(v['value']))}</td><td>{e(v['description'])}"
                       "</td></tr>" for k, v in rec["authors"].items())
        parts.append("<p><em>The authors' released model, measured by us:</em></p>"
                     f"<table><tr><th>measured</th><th>value</th><th>what it is</th></tr>{rows}</table>")
    for t in rec.get("tables", []):
        head = "".join(f"<th>{e(c)}</th>" for c in t["columns"])
        body = "".join("<tr>" + "".join(f"<td>{e(fmt(v))}</td>" for v in r) + "</tr>" for r in t["rows"])
        parts.append(f"<p><em>{e(t.get('title', ''))}</em></p><table><tr>{head}</tr>{body}</table>")
    if rec.get("notes"):
        parts.append(f"<p><em>Notes.</em> {e(rec['notes'])}</p>")
    if lacks_official_comparison(rec):
        parts.append(f"<p><strong>Authors' model: not compared.</strong> {e(OFFICIAL_HINT)}</p>")
    parts += [_img_tag(out / record_dir(rec), f) for f in rec.get("figures", [])]
    if run_folders_text(rec):
        parts.append(f"<p class='meta'>Run folders ({e(run_folders_text(rec))}).</p>")
    parts.append(f"<p class='meta'>Profile {e(rec['profile'])}, seeds {e(str(rec['seeds']))}, runtime: "
                 f"{e(runtime_of(rec))}, commit {e(rec.get('git_commit', 'unknown'))}.</p></section>")
    return "\n".join(parts)


CSS = """body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:.9em}
.badge{color:#fff;border-radius:4px;padding:2px 8px;font-size:.7em;vertical-align:middle}
figure{margin:.8em 0}img{max-width:100%}pre{background:#f6f6f6;padding:.6em;white-space:pre-wrap}
.meta{color:#666;font-size:.85em}section{border-top:1px solid #ddd;margin-top:1.5em}
.scroll{overflow-x:auto}.banner{background:#eef3f8;padding:.5em;border-radius:4px;font-weight:600}"""


def build_html(records: list[dict], out: Path, extra: str = "") -> str:
    e = html.escape
    columns, table, dependent = verdict_table(records)
    anchors = {rec["id"]: record_dir(rec) for rec in reversed(records)}  # a claim's first section

    def td(col: str, value: str) -> str:
        if col.startswith("verdict") and value in BADGE:
            return f'<td><span class="badge" style="background:{BADGE[value]}">{e(value)}</span></td>'
        return f"<td>{e(value)}</td>"

    rows = "".join(f'<tr><td><a href="#{e(anchors[row[0]])}">{e(row[0])}</a></td>'
                   + "".join(td(c, v) for c, v in zip(columns[1:], row[1:], strict=True)) + "</tr>" for row in table)
    rows = ("<tr>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr>" + rows)
    depends = "; ".join(dependent) if dependent else "none"
    intro = f"<hr><p><b>{e(BEYOND_INTRO)}</b></p>"
    body = "\n".join((intro if is_beyond(r) and (k == 0 or not is_beyond(records[k - 1])) else "")
                     + _html_section(r, out) for k, r in enumerate(records))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>geoae report</title><style>{CSS}</style>"
            f"</head><body><h1>geoae report: the paper's claims, measured</h1><p class='banner'>{e(banner(records))}"
            f"</p><p>Paper: {e(PAPER_REF)}.</p>"
            f"<p><b>Sources.</b> {e(sources.SOURCES_PARAGRAPH)}</p>"
            "<p>Every number is read from the experiment's results.json; every verdict follows the rule shown.</p>"
            f"<div class='scroll'><table>{rows}</table></div><p><b>Verdicts that depend on the recipe:</b> "
            f"{e(depends)}.</p>{extra}{body}</body></html>\n")


def build_report(out: str | Path, *, reproduce_md: str | Path | None = None,
                 compare: str | Path | None = None) -> list[Path]:
    """Write report.md, report.html and REPRODUCE.md in ``out`` (and REPRODUCE.md at ``reproduce_md``), all
    or none (``training.rundir.write_files_atomic``: a full disk leaves the previous report whole);
    ``compare``: the results directory of another profile, whose verdicts are shown next to these."""
    from .explorer import explorers_for_results, links_html
    from .training.rundir import write_files_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = load_results(out)
    others = load_results(Path(compare)) if compare is not None else None
    reproduce = build_reproduce_md(records, others)
    explorers = links_html(explorers_for_results(out))  # the interactive pages of D1, D4/D5, P3 (explorer.py)
    files = {out / "report.md": build_markdown(records, others),
             out / "report.html": build_html(records, out, explorers), out / "REPRODUCE.md": reproduce}
    if reproduce_md is not None:
        files[Path(reproduce_md)] = reproduce
    write_files_atomic({path: text.encode("utf-8") for path, text in files.items()})
    return list(files)
