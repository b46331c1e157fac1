"""The report in Markdown (``report.md``) and the reproduction page (``REPRODUCE.md``), from results records."""

from __future__ import annotations

from urllib.parse import quote

from ..experiments import sources
from .records import (
    BEYOND_INTRO,
    OFFICIAL_HINT,
    PAPER_REF,
    authors_of,
    banner,
    cell,
    claim_label,
    code,
    command_for,
    commits_of,
    fmt,
    fmt_interval,
    headline_of,
    is_beyond,
    lacks_official_comparison,
    md,
    numbers_of,
    reading_short_of,
    readings_of,
    recipe_note,
    record_dir,
    rule_label_of,
    run_folders_text,
    runtime_of,
    source_of,
    status_of,
    tags_text,
    theorem_note,
)


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
