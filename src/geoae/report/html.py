"""The report as one self-contained HTML page (``report.html``: the PNG figures embedded, it opens from disk)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from ..experiments import sources
from .markdown import verdict_table
from .records import (
    BADGE,
    BEYOND_INTRO,
    OFFICIAL_HINT,
    PAPER_REF,
    banner,
    claim_label,
    fmt,
    fmt_interval,
    is_beyond,
    lacks_official_comparison,
    numbers_of,
    readings_of,
    recipe_note,
    record_dir,
    rule_label_of,
    run_folders_text,
    runtime_of,
    source_of,
    status_of,
    tags_text,
)


def _img_tag(home: Path, name: str, text: str = "") -> str:
    """The figure ``name`` of the claim directory ``home``, embedded with ``text`` as its alt text and caption;
    never a file outside ``home``."""
    path = (home / name).resolve()
    if not path.is_relative_to(home.resolve()):
        return f"<p><em>figure {html.escape(name)} refused: outside {html.escape(home.name)}/</em></p>"
    if not path.is_file():
        return f"<p><em>missing figure {html.escape(name)}</em></p>"
    data = base64.b64encode(path.read_bytes()).decode()
    text = html.escape(text or path.name)
    return (f'<figure><img alt="{text}" src="data:image/png;base64,{data}"><figcaption>{text}</figcaption>'
            "</figure>")


_CODE = re.compile(r"`([^`]+)`")
_STRONG = re.compile(r"\*\*([^*]+)\*\*")
_EM = re.compile(r"(?<![*\w])\*([^*\s][^*]*)\*(?![*\w])")


def inline(text) -> str:
    """Text of a results file or of the sources module as HTML: escaped, with its inline Markdown (`code`,
    **strong**, *emphasis*) rendered instead of shown as marks."""
    out = html.escape(str(text))
    out = _CODE.sub(r"<code>\1</code>", out)
    out = _STRONG.sub(r"<b>\1</b>", out)
    return _EM.sub(r"<em>\1</em>", out)


def caption(rec: dict, name: str) -> str:
    """A figure's caption from its file name: 'd6_mse_per_radius.png' -> 'D6 (released): mse per radius'."""
    words = Path(name).stem.replace("_", " ")
    head = rec["id"].lower()
    words = words[len(head):].strip() if words.lower().startswith(head) else words
    return f"{rec['id']}{recipe_note(rec)}: {words}"


def _table(head: str, body: str) -> str:
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


def _html_section(rec: dict, out: Path) -> str:
    e = inline
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
    parts.append(_table("<th>measured</th><th>value</th><th>what it is</th>", rows))
    if rec.get("authors"):
        rows = "".join(f"<tr><td><code>{e(k)}</code></td><td>{e(fmt(v['value']))}</td><td>{e(v['description'])}"
                       "</td></tr>" for k, v in rec["authors"].items())
        parts.append("<p><em>The authors' released model, measured by us:</em></p>"
                     + _table("<th>measured</th><th>value</th><th>what it is</th>", rows))
    for t in rec.get("tables", []):
        head = "".join(f"<th>{e(c)}</th>" for c in t["columns"])
        body = "".join("<tr>" + "".join(f"<td>{e(fmt(v))}</td>" for v in r) + "</tr>" for r in t["rows"])
        parts.append(f"<p><em>{e(t.get('title', ''))}</em></p>" + _table(head, body))
    if rec.get("notes"):
        parts.append(f"<p><em>Notes.</em> {e(rec['notes'])}</p>")
    if lacks_official_comparison(rec):
        parts.append(f"<p><strong>Authors' model: not compared.</strong> {e(OFFICIAL_HINT)}</p>")
    parts += [_img_tag(out / record_dir(rec), f, caption(rec, f)) for f in rec.get("figures", [])]
    if run_folders_text(rec):
        parts.append(f"<p class='meta'>Run folders ({e(run_folders_text(rec))}).</p>")
    parts.append(f"<p class='meta'>Profile {e(rec['profile'])}, seeds {e(str(rec['seeds']))}, runtime: "
                 f"{e(runtime_of(rec))}, commit {e(rec.get('git_commit', 'unknown'))}. <a href='#top'>Back to the "
                 "top</a></p></section>")
    return "\n".join(parts)


CSS = """body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222;
overflow-wrap:anywhere}figcaption{color:#555;font-size:.85em}code{overflow-wrap:anywhere}
nav.toc{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:.3em 0;font-size:.85em;
overflow-x:auto;white-space:nowrap}nav.toc a{margin-right:.7em}
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
    toc = "".join(f'<a href="#{e(record_dir(r))}">{e(r["id"])}{e(" " + r["recipe"] if r.get("recipe") else "")}</a>'
                  for r in records)
    return (f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width, "
            f"initial-scale=1'><title>geoae report</title><style>{CSS}</style></head><body id='top'>"
            f"<nav class='toc'>{toc}</nav><h1>geoae report: the paper's claims, measured</h1><p class='banner'>"
            f"{e(banner(records))}</p><p>Paper: {inline(PAPER_REF)}.</p>"
            f"<p><b>Sources.</b> {inline(sources.SOURCES_PARAGRAPH)}</p>"
            "<p>Every number is read from the experiment's results.json; every verdict follows the rule shown.</p>"
            f"<div class='scroll'><table>{rows}</table></div><p><b>Verdicts that depend on the recipe:</b> "
            f"{e(depends)}.</p>{extra}{body}</body></html>\n")
