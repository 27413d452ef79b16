"""Figures of numbers: per-class precision-recall, F-beta against threshold, score
histograms, the class confusion, and the training curves of a run folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from cryo3d.report.outcomes import TP, Outcomes, pr_curve
from cryo3d.report.rendering import new_figure, save_figure

__all__ = ["render_class_curves", "render_confusion", "render_training", "read_jsonl"]


def render_class_curves(
    path: str | Path,
    names: Sequence[str],
    scores: Mapping[str, np.ndarray],
    is_tp: Mapping[str, np.ndarray] | None,
    n_gt: Mapping[str, int] | None,
    thresholds: Mapping[str, float] | None,
    colours: Mapping[str, str],
    beta: float = 4.0,
) -> dict:
    """Per class (one row each): precision-recall, F-beta against threshold, score histograms.

    Without ground truth (``is_tp`` None) only the score histogram is drawn.

    Args:
        path: PNG to write.
        names: classes in order.
        scores: every prediction's score per class (all, not only those kept).
        is_tp: per class, whether each prediction is a true positive (greedy matching).
        n_gt: ground-truth particles per class.
        thresholds: the chosen threshold per class (marked), or None.
        colours: class colours.
        beta: F-beta's beta.

    Returns:
        Record with the best threshold and F-beta per class (``best``).
    """
    has_gt = is_tp is not None
    ncol = 3 if has_gt else 1
    nrow = len(names)
    fig = new_figure(340 * ncol, 250 * nrow + 30)
    best = {}
    for i, n in enumerate(names):
        s = np.asarray(scores.get(n, np.zeros(0)), np.float64)
        t_chosen = None if thresholds is None else thresholds.get(n)
        if has_gt:
            tp = np.asarray(is_tp.get(n, np.zeros(0, bool)), bool)
            cur = pr_curve(s, tp, int(n_gt.get(n, 0)), beta)
            ax = fig.add_subplot(nrow, ncol, i * ncol + 1)
            if cur["threshold"].size:
                ax.plot(cur["recall"], cur["precision"], color="k", lw=1.2, drawstyle="steps-post")
                b = cur["best"]
                ax.plot(cur["recall"][b], cur["precision"][b], "o", color="tab:orange", label="best F")
                best[n] = {"threshold": float(cur["threshold"][b]), "fbeta": float(cur["fbeta"][b])}
            ax.set_xlim(0, 1.02)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("recall", fontsize=8)
            ax.set_ylabel("precision", fontsize=8)
            ax.set_title(f"{n}: precision-recall ({int(n_gt.get(n, 0))} true particles)", fontsize=8)
            ax = fig.add_subplot(nrow, ncol, i * ncol + 2)
            if cur["threshold"].size:
                ax.plot(cur["threshold"], cur["fbeta"], color="k", lw=1.2)
                b = cur["best"]
                ax.plot(cur["threshold"][b], cur["fbeta"][b], "o", color="tab:orange",
                        label=f"best {cur['threshold'][b]:.2f}")
            if t_chosen is not None:
                ax.axvline(t_chosen, color="tab:blue", ls="--", lw=1.2, label=f"chosen {t_chosen:.2f}")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("score threshold", fontsize=8)
            ax.set_ylabel(f"F{beta:g}", fontsize=8)
            ax.set_title(f"{n}: F{beta:g} against threshold", fontsize=8)
            ax.legend(fontsize=7, loc="lower left")
            ax = fig.add_subplot(nrow, ncol, i * ncol + 3)
            bins = np.linspace(0, 1, 21)
            ax.hist([s[tp], s[~tp]], bins=bins, color=["#00a030", "#e01010"], label=["true pos.", "false pos."],
                    histtype="stepfilled", alpha=0.6)
        else:
            ax = fig.add_subplot(nrow, ncol, i + 1)
            ax.hist(s, bins=np.linspace(0, 1, 21), color=colours[n], edgecolor="k", label="picks")
        if t_chosen is not None:
            ax.axvline(t_chosen, color="tab:blue", ls="--", lw=1.2)
        ax.set_xlabel("score", fontsize=8)
        ax.set_ylabel("picks", fontsize=8)
        ax.set_title(f"{n}: score histogram ({s.size} picks)", fontsize=8)
        ax.legend(fontsize=7)
    for ax in fig.axes:
        ax.tick_params(labelsize=7)
    H = 250 * nrow + 30
    fig.subplots_adjust(left=60 / (340 * ncol), right=0.98, bottom=45 / H, top=1 - 30 / H, wspace=0.3,
                        hspace=95 / 250)  # fixed margins: tight_layout costs seconds for many axes
    save_figure(fig, path)
    return {"file": Path(path).name, "best": best}


def render_confusion(path: str | Path, out: Outcomes) -> dict:
    """The class confusion as a matrix of counts (colour: share of the row)."""
    C = len(out.labels)
    rows = out.labels + ["background (false pick)"]
    cols = out.labels + ["missed"]
    m = out.confusion
    frac = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    size = 140 + 70 * (C + 1)
    fig = new_figure(size + 160, size + 80)
    ax = fig.add_axes([0.3, 0.3, 0.62, 0.6])
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i in range(C + 1):
        for j in range(C + 1):
            ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=8,
                    color="white" if frac[i, j] > 0.6 else "black")
    ax.set_xticks(range(C + 1), cols, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(C + 1), rows, fontsize=8)
    ax.set_xlabel("picked as", fontsize=9)
    ax.set_ylabel("true particle", fontsize=9)
    ax.set_title("class confusion (counts; colour = share of the row)", fontsize=9)
    save_figure(fig, path)
    return {"file": Path(path).name, "labels": out.labels, "matrix": m.tolist()}


def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a JSON-lines file (missing file: none; a broken line is skipped)."""
    p = Path(path)
    if not p.exists():
        return []
    recs = []
    for line in p.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(r, dict):
            recs.append(r)
    return recs


def render_training(path: str | Path, val: Sequence[dict], train: Sequence[dict], beta: float = 4.0) -> dict:
    """Training curves: validation score and per-class F-beta, training loss, loss beta and learning rate.

    Args:
        path: PNG to write.
        val: ``val_metrics.jsonl`` records (``epoch``, ``score``, ``per_class`` {name: {fbeta}}).
        train: ``train_metrics.jsonl`` records (``epoch``, ``loss``, ``beta``, ``lr``).
        beta: F-beta's beta (axis label).
    """
    fig = new_figure(1100, 320)
    ax = fig.add_subplot(1, 3, 1)
    val = [r for r in val if r.get("epoch") is not None]
    if val:
        ep = [r["epoch"] for r in val]
        for n in val[-1].get("per_class", {}):
            ax.plot(ep, [r.get("per_class", {}).get(n, {}).get("fbeta", np.nan) for r in val], lw=1, marker=".",
                    label=n)
        ax.plot(ep, [r["score"] for r in val], color="k", lw=2.2, marker="o", label="score")
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel(f"validation F{beta:g}", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_title("validation score and per-class F-beta", fontsize=9)
    ax.legend(fontsize=6)
    train = [r for r in train if r.get("epoch") is not None]
    ep = [r["epoch"] for r in train]
    ax = fig.add_subplot(1, 3, 2)
    if train:
        ax.plot(ep, [r.get("loss", np.nan) for r in train], color="k", marker=".")
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel("mean training loss", fontsize=8)
    ax.set_title("training loss", fontsize=9)
    ax = fig.add_subplot(1, 3, 3)
    if train:
        ax.plot(ep, [r.get("beta", np.nan) if r.get("beta") is not None else np.nan for r in train],
                color="tab:purple", marker=".", label="loss beta")
        ax2 = ax.twinx()
        ax2.plot(ep, [r.get("lr", np.nan) for r in train], color="tab:green", marker=".", label="learning rate")
        ax2.set_ylabel("learning rate", fontsize=8, color="tab:green")
        ax2.tick_params(labelsize=7)
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel("loss beta", fontsize=8, color="tab:purple")
    ax.set_title("beta schedule and learning rate", fontsize=9)
    for a in fig.axes:
        a.tick_params(labelsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    return {"file": Path(path).name, "n_val": len(val), "n_train": len(train)}
