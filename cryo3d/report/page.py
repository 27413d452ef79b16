"""The report's ``index.html``: one static, self-contained page (inline CSS, no script).

Everything the page shows is in its folder (PNG files beside it), so it opens from a
file system, a copied folder or an archive with no server and no internet.
"""

from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

__all__ = ["render_page"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:1.5em;margin-bottom:4px} h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:32px}
h3{font-size:1.0em;margin-top:18px} .meta{color:#555;font-size:.9em}
table{border-collapse:collapse;font-size:.85em;margin:8px 0} td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2} td:first-child,th:first-child{text-align:left}
.sw{display:inline-block;width:14px;height:14px;border-radius:50%;border:3px solid;vertical-align:middle;margin:0 4px 0 12px}
figure{display:inline-block;margin:6px 10px 6px 0;vertical-align:top} figcaption{font-size:.8em;color:#555}
img{max-width:100%;height:auto;border:1px solid #ddd} pre{background:#f7f7f7;padding:8px;font-size:.8em;overflow-x:auto}
nav a{margin-right:12px} .slab img{max-width:680px}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    h = "".join(f"<th>{_e(c)}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{b}</table>"


def _fig(file: str, caption: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<figure{c}><img src="{_e(file)}" alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>'


def render_page(doc: Mapping[str, Any]) -> str:
    """HTML of a report from its record (what ``report.json`` holds, see :func:`cryo3d.report.write_report`)."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{_e(doc['title'])}</title><style>{_CSS}</style></head><body>",
           f"<h1>{_e(doc['title'])}</h1>",
           f'<p class="meta">written {_e(doc["created"])} by cryo3d {_e(doc["version"])}'
           + "".join(f"<br>{_e(n)}" for n in doc.get("notes", [])) + "</p>"]
    nav = ['<a href="#summary">summary</a>'] + [f'<a href="#{_e(t["anchor"])}">{_e(t["name"])}</a>'
                                                 for t in doc["tomograms"]]
    if doc.get("curves"):
        nav.append('<a href="#curves">per-class curves</a>')
    if doc.get("confusion"):
        nav.append('<a href="#confusion">confusion</a>')
    if doc.get("training"):
        nav.append('<a href="#training">training</a>')
    out.append("<nav>" + "".join(nav) + "</nav>")

    out.append('<h2 id="summary">Summary</h2>')
    leg = []
    if doc["has_gt"]:
        leg += [f'<span class="sw" style="border-color:{c}"></span>{_e(n)}' for n, c in doc["outcome_colours"].items()]
        leg.append("&nbsp;&nbsp;inner ring: class")
    leg += [f'<span class="sw" style="border-color:{c}"></span>{_e(n)}' for n, c in doc["class_colours"].items()]
    leg.append("&nbsp;&nbsp;solid: centred in the slab; dashed: centred outside, reaching in (radius of the cut)")
    out.append("<p>" + "".join(leg) + "</p>")
    if doc["has_gt"]:
        out.append(f"<p>{_e(doc['matching_note'])}</p>")
    out.append(_table(["class", "radius (Å)", "picks shown", "threshold"] + (["true pos.", "false pos.", "missed"]
                                                                           if doc["has_gt"] else []),
                      doc["class_rows"]))
    if doc.get("score_table"):
        out.append(f"<h3>Score ({_e(doc['score_name'])})</h3><pre>{_e(doc['score_table'])}</pre>")

    for t in doc["tomograms"]:
        out.append(f'<h2 id="{_e(t["anchor"])}">{_e(t["name"])}</h2>')
        out.append(f'<p class="meta">{_e(t["describe"])}</p>')
        if t.get("counts"):
            out.append(_table(list(t["counts"][0]), [list(r.values()) for r in t["counts"]]))
        out.append("<h3>z-slabs (in z order, lowest first; each labelled with its z range)</h3>")
        out.extend(_fig(r["file"], r["caption"], "slab") for r in t["slabs"])
        out.append("<h3>Orthogonal views (the missing wedge spreads density along z)</h3>")
        out.extend(_fig(r["file"], r["caption"]) for r in t["ortho"])
        if t.get("gallery"):
            out.append("<h3>Gallery</h3>")
            out.append(_fig(t["gallery"]["file"], t["gallery"]["caption"]))
        if t.get("heatmaps"):
            out.append("<h3>Heatmaps</h3>")
            out.append(_fig(t["heatmaps"]["file"], t["heatmaps"]["caption"]))
    if doc.get("curves"):
        out.append('<h2 id="curves">Per-class curves</h2>')
        out.append(_fig(doc["curves"]["file"], doc["curves"]["caption"]))
    if doc.get("confusion"):
        out.append('<h2 id="confusion">Class confusion</h2>')
        out.append(f"<p>{_e(doc['confusion']['caption'])}</p>")
        out.append(_fig(doc["confusion"]["file"], "class confusion"))
    if doc.get("training"):
        out.append('<h2 id="training">Training</h2>')
        out.append(_fig(doc["training"]["file"], doc["training"]["caption"]))
    out.append("</body></html>")
    return "\n".join(out) + "\n"
