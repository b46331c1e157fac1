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

from pathlib import Path

from .html import build_html
from .markdown import build_markdown, build_reproduce_md
from .records import BADGE, OFFICIAL_HINT, fmt, lacks_official_comparison, load_results, malformed

__all__ = ["build_report", "build_markdown", "build_reproduce_md", "build_html", "load_results", "malformed", "fmt",
           "lacks_official_comparison", "BADGE", "OFFICIAL_HINT"]


def build_report(out: str | Path, *, reproduce_md: str | Path | None = None,
                 compare: str | Path | None = None) -> list[Path]:
    """Write report.md, report.html and REPRODUCE.md in ``out`` (and REPRODUCE.md at ``reproduce_md``), all
    or none (``training.rundir.write_files_atomic``: a full disk leaves the previous report whole);
    ``compare``: the results directory of another profile, whose verdicts are shown next to these."""
    from ..explorer import explorers_for_results, links_html
    from ..training.rundir import write_files_atomic

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
