"""Tables of the experiments: CSV and JSON-lines files, ``--set`` values, markdown tables.

Every table an experiment writes (results, folds, per-epoch metrics) goes through
:func:`write_csv` (atomic); every figure shown in a markdown table through
:func:`format_value`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from cryo3d.io.atomic import json_default, write_text_atomic

#: Table columns shown as whole numbers.
_INT_KEYS = frozenset({"best_epoch", "final_epoch", "epochs_to_conv", "n_validations", "seconds", "fold", "epoch", "n"})


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The records of a JSON-lines file (empty list when the file does not exist)."""
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()]


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], fields: Sequence[str] | None = None) -> None:
    """Write ``rows`` as a CSV table atomically; columns are ``fields`` or the union of the rows' keys in order."""
    if fields is None:
        fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_value(r.get(k)) for k in fields})
    write_text_atomic(path, buf.getvalue())


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, default=json_default)
    return v


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a CSV table as dicts of strings (empty list when the file does not exist)."""
    p = Path(path)
    if not p.exists():
        return []
    with open(p, newline="") as fh:
        return list(csv.DictReader(fh))


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> overrides, each value read as YAML (``1e-3``, ``null``, ``{se: false}``)."""
    out: dict[str, Any] = {}
    for it in items:
        if "=" not in it:
            raise ValueError(f"--set expects KEY=VALUE (a bundle key and a YAML value), got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def as_float(v: Any) -> float:
    """``v`` as a float; NaN when it is not a number (an empty CSV cell, None)."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def class_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The per-class columns (``f_<class>``) of ``rows``, in order of first appearance."""
    return list(dict.fromkeys(k for r in rows for k in r if k.startswith("f_")))


def format_value(v: Any, key: str = "", digits: int = 3) -> str:
    """A table cell: ``digits`` decimals, a whole number for counts and epochs, text as it is, blank for none."""
    x = as_float(v)
    if math.isnan(x):
        return "" if v in (None, "") or isinstance(v, float) else str(v)
    if key in _INT_KEYS:
        return str(int(round(x)))
    return f"{x:.{digits}f}"


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A GitHub markdown table of ``rows``; ``columns`` are ``(key, header)`` pairs."""
    head = "| " + " | ".join(h for _, h in columns) + " |"
    sep = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|"
    body = ["| " + " | ".join(format_value(r.get(k), k) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])
