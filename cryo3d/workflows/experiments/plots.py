"""The experiments' figures: training curves of runs (ablation, cross-validation) and across-epoch scores.

matplotlib is imported inside the functions on purpose: it is heavy, and only a run that
draws needs it. Figures are drawn by the Agg canvas (no display, no global backend switch).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from cryo3d.workflows.experiments.history import by_epoch
from cryo3d.workflows.experiments.tables import read_jsonl


def _figure(ncols: int, width: float = 5.0, height: float = 3.8) -> tuple[Any, Any]:
    """A matplotlib figure drawn by the Agg canvas (no display, no global backend switch)."""
    from matplotlib.figure import Figure  # lazy on purpose: heavy, only drawing needs it

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _integer_epochs(ax: Any) -> None:
    """Whole-number epoch ticks on ``ax``'s x axis and a light grid."""
    from matplotlib.ticker import MaxNLocator  # lazy on purpose: heavy, only drawing needs it

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def plot_training_curves(runs: Sequence[tuple[str, str | os.PathLike]], path: str | os.PathLike,
                         title: str = "", metric_beta: float = 4.0) -> Path:
    """Training loss and validation F-beta against epoch, one line per run folder, as a PNG.

    ``runs`` are ``(label, output_dir)`` pairs (folders with ``train_loss.jsonl`` and
    ``val_metrics.jsonl``). Different losses have different scales (BCE ~0.01, the fuzzy
    term ~1), so each loss curve is divided by its first epoch's value (given in the
    legend): the shape (how fast, whether it flattens) is what to compare.
    """
    fig, (ax_l, ax_f) = _figure(2)
    for label, d in runs:
        tl = read_jsonl(Path(d) / "train_loss.jsonl")
        if tl:
            by = {r["epoch"]: r["loss"] for r in tl}
            ep = sorted(by)
            ref = by[ep[0]] if by[ep[0]] else 1.0
            ax_l.plot(ep, [by[e] / ref for e in ep], marker=".", label=f"{label} (epoch {ep[0]}: {by[ep[0]]:.3g})")
        vh = by_epoch(read_jsonl(Path(d) / "val_metrics.jsonl"))
        if vh:
            ax_f.plot([r["epoch"] for r in vh], [r["score"] for r in vh], marker="o", label=label)
    ax_l.set(xlabel="epoch", ylabel="mean training loss / first epoch's", title="training loss (relative)")
    ax_f.set(xlabel="epoch", ylabel=f"validation F{metric_beta:g}", title=f"validation F{metric_beta:g}",
             ylim=(-0.02, 1.02))
    for ax in (ax_l, ax_f):
        _integer_epochs(ax)
        if ax.get_lines():
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=100)
    return p


def plot_epoch_curves(rows: Sequence[Mapping[str, Any]], train_dir: Path, path: str | os.PathLike,
                      beta: float = 4.0) -> None:
    """Across-epoch scores of a run's checkpoints, one line per set and mode, beside the bundle's validation curve.

    ``rows`` are the rows of :func:`cryo3d.workflows.experiments.epochs.evaluate_epochs`
    (``epoch``, ``set``, ``mode``, ``score``); the bundle's own curve is read from
    ``train_dir/val_metrics.jsonl``.
    """
    fig, (ax,) = _figure(1, width=6.5, height=4.2)
    for k, s in enumerate(dict.fromkeys(r["set"] for r in rows)):
        for mode, style in (("checkpoint", "-"), ("sweep", "--")):
            rs = [r for r in rows if r["set"] == s and r["mode"] == mode]
            if rs:
                ax.plot([r["epoch"] for r in rs], [r["score"] for r in rs], style, color=f"C{k}",
                        marker="o" if mode == "checkpoint" else "x",
                        label=f"{s} ({'checkpoint thresholds' if mode == 'checkpoint' else 'best thresholds'})")
    vh = by_epoch(read_jsonl(train_dir / "val_metrics.jsonl"))
    if vh:
        ax.plot([r["epoch"] for r in vh], [r["score"] for r in vh], ":", color="grey", label="bundle validation")
    ax.set(xlabel="epoch (checkpoint)", ylabel=f"particle F{beta:g}", ylim=(-0.02, 1.02),
           title=f"across-epoch evaluation: {train_dir.name}")
    _integer_epochs(ax)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=100)
