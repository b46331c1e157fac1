"""The results records the report reads: where they lie, what makes one unfit, and how each field is shown.

Nothing here computes a number: every value comes from ``<out>/<ID>/results.json`` (``<out>/<ID>/<recipe>/`` for a
claim run under a recipe). A file that cannot be shown becomes a failed record saying why (``load_results``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..experiments import sources
from ..experiments.registry import IDS as EXPERIMENT_ORDER

BADGE = {"confirmed": "#2e7d32", "partly": "#ef6c00", "not reproduced": "#c62828", "inconclusive": "#546e7a",
         "measured": "#1565c0",
         "failed": "#555"}


PAPER_REF = ("Newson, Almansa, Gousseau, Ladjal, *Processing Simple Geometric Attributes with Autoencoders*, "
             "JMIV 62, 293-312 (2020)")


OFFICIAL_HINT = ("The comparison with the authors' released model was skipped. To include it, install h5py "
                 "(`pip install geoae[keras]`) and run `geoae reproduce --only D1,D2 --official-weights "
                 "PATH/disk_example_model_weights.h5` (or set GEOAE_OFFICIAL_WEIGHTS).")


BEYOND_INTRO = ("Beyond the paper: the experiments below test our own predictions (ICLR 2018 Prop. 2 carried to "
                "other dimensions, radius densities and shapes), not claims of the paper; their rules were written "
                "before their runs.")


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
    from ..recipes import NAMES

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
                "control", "kind", "recipe", "headline")


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
    from .html import _html_section
    from .markdown import _md_section, build_reproduce_md

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
    if isinstance(rec.get("headline"), str) and rec["headline"]:
        return rec["headline"]
    k, v = numbers_of(rec)[0]
    return f"{k} = {fmt_interval(rec, k, v)}"
