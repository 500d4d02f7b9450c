"""correctness.html: one self-contained page (inline CSS and JS, no network) a person reads.

Top to bottom: the run (command, seed, torch, device, duration) and the counts by status per
check family; failures and errors first, grouped by case, each with its whole diagnosis, its
picture where there is one and its `reproduce:` line with a copy button; the skip reasons with
their counts; then every case as a collapsible group (description, source, rows), with status
and text filters. The rows travel as JSON and the script shows the matching cases 200 at a
time, so the OpInfo sweep's ~10,000 rows stay quick to open.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping

import pandas as pd

from harness.record import BAD, STATUSES

COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "error": "#953800", "skip": "#6e7781",
           "xfail": "#8250df", "xpass": "#bc4c00", "warn": "#9a6700"}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;
 max-width:1240px;padding:0 16px 40px;color:#1f2328}
h1{font-size:22px;margin:18px 0 6px}h2{font-size:18px;margin:26px 0 8px;
 border-bottom:1px solid #d0d7de;padding-bottom:4px}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;width:100%;table-layout:fixed;margin:6px 0}
td,th{border:1px solid #d0d7de;padding:3px 6px;text-align:left;vertical-align:top;
 overflow-wrap:anywhere}
th{background:#f6f8fa}table.run{width:auto;table-layout:auto}table.run th{white-space:nowrap}
table.counts{width:auto}
table.counts td.n{text-align:right;min-width:48px}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f8fa;padding:8px;
 border-radius:6px;margin:6px 0;font:12.5px/1.4 ui-monospace,Menlo,Consolas,monospace}
.badge{display:inline-block;border-radius:10px;padding:0 8px;color:#fff;font-size:12px;
 margin-right:4px}
details.case>summary{cursor:pointer;padding:3px 0}details.case{border-bottom:1px solid #eaeef2}
details.failure{border-left:4px solid #cf222e;padding-left:8px;margin:8px 0}
details.failure.error{border-left-color:#953800}details.failure.xpass{border-left-color:#bc4c00}
details.failure.warn{border-left-color:#9a6700}
.repro{display:flex;gap:6px;align-items:center;margin:4px 0}
.repro code{background:#eef1f4;padding:2px 6px;border-radius:4px;overflow-wrap:anywhere}
button{cursor:pointer}.filters{position:sticky;top:0;background:#fff;padding:8px 0;
 border-bottom:1px solid #d0d7de;z-index:1}.filters label{margin-right:10px}
.muted{color:#656d76}.top{display:flex;gap:24px;align-items:flex-start;flex-wrap:wrap}
.top>div:first-child{flex:1 1 560px;min-width:0}.top h2{margin-top:0}
table.counts td,table.counts th{padding:1px 6px;font-size:13px}nav a{margin-right:12px}
img.figure{max-width:100%;display:block}
"""

CSS += "".join(f".s-{status}{{background:{colour}}}" for status, colour in COLOURS.items())

SCRIPT = """
let DATA=[], LIMIT=200;
const STATUSES=__STATUSES__;
function esc(v){return String(v).replace(/[&<>"']/g,c=>'&#'+c.charCodeAt(0)+';');}
function badge(s,text){return '<span class="badge s-'+s+'">'+esc(text)+'</span>';}
function matching(group,shown,text){
  const named=!text||group.c.toLowerCase().includes(text);
  return group.rows.filter(r=>shown.has(r[3])&&(named||r[0].toLowerCase().includes(text)));
}
function table(group,rows){
  return '<p class="muted">'+group.about+'</p><table><colgroup><col style="width:14%">'+
    '<col style="width:9%"><col style="width:6%"><col style="width:7%"><col style="width:8%">'+
    '<col style="width:8%"><col></colgroup><thead><tr><th>check</th><th>dtype</th>'+
    '<th>device</th><th>status</th><th>max abs err</th><th>max rel err</th>'+
    '<th>pattern or message</th></tr></thead><tbody>'+rows.map(r=>'<tr data-status="'+
    esc(r[3])+'"><td>'+esc(r[0])+'</td><td>'+esc(r[1])+'</td><td>'+esc(r[2])+'</td><td>'+
    badge(r[3],r[3])+'</td><td>'+esc(r[4])+'</td><td>'+esc(r[5])+'</td><td>'+esc(r[6])+
    '</td></tr>').join('')+'</tbody></table>';
}
function applyFilters(){
  const shown=new Set([...document.querySelectorAll('.filters input[type=checkbox]')]
    .filter(b=>b.checked).map(b=>b.value));
  const text=document.getElementById('text').value.toLowerCase();
  let total=0, groups=0; const parts=[];
  for(const group of DATA){
    const rows=matching(group,shown,text);
    if(!rows.length) continue;
    total+=rows.length; groups++;
    if(parts.length>=LIMIT) continue;
    const counts={}; for(const r of group.rows) counts[r[3]]=(counts[r[3]]||0)+1;
    const badges=STATUSES.filter(s=>counts[s]).map(s=>badge(s,counts[s]+' '+s)).join('');
    parts.push('<details class="case"><summary><b>'+esc(group.c)+'</b> '+badges+
               '</summary>'+table(group,rows)+'</details>');
  }
  const more=groups-parts.length;
  document.getElementById('groups').innerHTML=parts.join('')+(more>0?
    '<p><button onclick="LIMIT+=500;applyFilters()">show '+Math.min(more,500)+' more of '+
    more+' cases</button></p>':'');
  document.getElementById('shown').textContent=total;
  document.body.dataset.readyMs=Math.round(performance.now());
}
function copyLine(button){
  const text=button.previousElementSibling.textContent;
  navigator.clipboard&&navigator.clipboard.writeText(text);
  button.textContent='copied';setTimeout(()=>button.textContent='copy',1200);
}
document.addEventListener('DOMContentLoaded',()=>{
  DATA=JSON.parse(document.getElementById('rows').textContent);
  for(const el of document.querySelectorAll('.filters input'))
    el.addEventListener('input',()=>{LIMIT=200;applyFilters();});
  applyFilters();
});
"""
SCRIPT = SCRIPT.replace("__STATUSES__", json.dumps(list(STATUSES)))


def _e(value) -> str:
    """Escaped text; empty for None and NaN (never the words 'None' or 'nan')."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return html.escape(str(value))


def _number(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "" if value is None or math.isnan(value) else _e(value)
    return f"{value:.3g}"


def _badge(status: str, text: str | None = None) -> str:
    return (f'<span class="badge" style="background:{COLOURS.get(status, "#57606a")}">'
            f"{_e(text or status)}</span>")


def _run_table(run: Mapping[str, str]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in run.items() if v)
    return f'<table class="run">{rows}</table>'


def _counts(frame: pd.DataFrame) -> str:
    present = [s for s in STATUSES if (frame["status"] == s).any()]
    table = pd.crosstab(frame["check"], frame["status"]).reindex(columns=present, fill_value=0)
    head = "".join(f"<th>{_badge(s)}</th>" for s in present)
    body = []
    for check, counts in table.iterrows():
        cells = "".join(f'<td class="n" style="color:{COLOURS[s]}">{n or ""}</td>'
                        for s, n in counts.items())
        body.append(f"<tr><td>{_e(check)}</td>{cells}</tr>")
    total = "".join(f'<td class="n"><b>{int((frame["status"] == s).sum())}</b></td>'
                    for s in present)
    return (f'<table class="counts"><tr><th>check family</th>{head}</tr>{"".join(body)}'
            f"<tr><td><b>all</b></td>{total}</tr></table>")


def _reproduce(row) -> str:
    command = getattr(row, "reproduce", "")
    if not isinstance(command, str) or not command:
        return ""
    return (f'<div class="repro">reproduce: <code>{_e(command)}</code>'
            '<button onclick="copyLine(this)">copy</button></div>')


def _failures(frame: pd.DataFrame, groups, none: str = "No failures or errors.") -> str:
    """Failing rows grouped by case, each open with its diagnosis; one entry for the items
    one broken case took down (`groups`: report._grouped, or (row, 1) per warn row)."""
    if not groups:
        return f"<p>{none}</p>"
    by_case: dict[str, list] = {}
    for row, count in groups:
        by_case.setdefault(row.case, []).append((row, count))
    parts = []
    for case, entries in by_case.items():
        parts.append(f"<h3>{_e(case)}</h3>")
        for row, count in entries:
            what = (f"{count} items, every one with this error" if count > 1
                    else f"{row.check} {row.dtype} {row.device}")
            headline = row.pattern if isinstance(row.pattern, str) and row.pattern else \
                str(row.message).splitlines()[0] if isinstance(row.message, str) else ""
            figure = getattr(row, "figure", "")
            image = (f'<img class="figure" alt="autograd against the reference per element" '
                     f'src="data:image/png;base64,{figure}">'
                     if isinstance(figure, str) and figure else "")
            message = str(row.message) if isinstance(row.message, str) else ""
            parts.append(
                f'<details open class="failure {row.status}"><summary>{_badge(row.status)}'
                f"{_e(what)}: {_e(headline)}</summary><pre>{_e(message)}</pre>{image}"
                f"{_reproduce(row)}</details>")
    return "".join(parts)


def _skips(frame: pd.DataFrame) -> str:
    skipped = frame[frame["status"] == "skip"]
    if skipped.empty:
        return "<p>No skips.</p>"
    reasons = skipped["message"].fillna("").map(lambda m: m.splitlines()[0] if m else "")
    parts = []
    for reason, rows in skipped.groupby(reasons, sort=False):
        items = "".join(f"<li>{_e(r.case)} {_e(r.check)} {_e(r.dtype)} {_e(r.device)}</li>"
                        for r in rows.itertuples())
        parts.append(f"<details><summary><b>{len(rows)}</b> {_e(reason)}</summary>"
                     f"<ul>{items}</ul></details>")
    return "".join(parts)


def _cases(frame: pd.DataFrame, descriptions: Mapping[str, str]) -> str:
    """Every case's rows as JSON; the script shows the cases that match the filters, 200 at
    a time, so 10,000 rows cost the page one JSON parse, not 10,000 table rows."""
    data: dict[str, dict] = {}
    for r in frame.itertuples():  # one pass: a groupby costs ~2 ms a case
        entry = data.get(r.case)
        if entry is None:
            source = getattr(r, "source", "")
            about = " · ".join(_e(x) for x in (descriptions.get(r.case, ""), source) if _e(x))
            entry = data[r.case] = {"c": r.case, "about": about, "rows": []}
        entry["rows"].append([r.check, r.dtype, r.device, r.status, _number(r.max_abs_err),
                              _number(r.max_rel_err), _text(r.pattern) or _first(r.message)])
    return json.dumps(list(data.values()), separators=(",", ":")).replace("</", "<\\/")


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def _first(message) -> str:
    return message.splitlines()[0] if isinstance(message, str) and message else ""


def page(frame: pd.DataFrame, groups, run: Mapping[str, str],
         descriptions: Mapping[str, str] | None = None) -> str:
    """The whole HTML document for `frame` (with a `figure` column where pictures exist)."""
    descriptions = descriptions or {}
    rows_json = _cases(frame, descriptions)
    bad = int(frame["status"].isin(BAD).sum())
    warned = [(row, 1) for row in frame[frame["status"] == "warn"].itertuples()]
    boxes = "".join(f'<label><input type="checkbox" value="{s}" checked> {_badge(s)}</label>'
                    for s in STATUSES)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>Gradient correctness</title><style>{CSS}</style><script>{SCRIPT}</script>"
        "</head><body><h1>Gradient correctness</h1>"
        '<nav><a href="#failures">failures and errors</a><a href="#warnings">warnings</a>'
        '<a href="#skips">skip reasons</a>'
        '<a href="#cases">every case</a></nav>'
        f'<div class="top"><div>{_run_table(run)}</div><div><h2>Counts by check family</h2>'
        f"{_counts(frame)}</div></div>"
        f'<h2 id="failures">Failures and errors ({bad})</h2>{_failures(frame, groups)}'
        f'<h2 id="warnings">Warnings ({len(warned)}: right values; they fail the run under '
        f'--strict)</h2>{_failures(frame, warned, "No warnings.")}'
        f'<h2 id="skips">Skip reasons</h2>{_skips(frame)}'
        f'<h2 id="cases">Every case ({frame["case"].nunique()} cases, {len(frame)} rows)</h2>'
        f'<div class="filters">{boxes}<input id="text" type="search" placeholder="filter case '
        'or check" size="28"> <span class="muted"><span id="shown"></span> rows shown</span>'
        f'</div><div id="groups"></div><script type="application/json" id="rows">{rows_json}'
        "</script>"
        "</body></html>\n")
