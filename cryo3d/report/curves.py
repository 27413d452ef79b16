"""Figures of numbers: per-class precision-recall, F-beta against threshold, score
histograms, the class confusion, and the training curves of a run folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cryo3d.report.outcomes import FP, TP, Outcomes, pr_curve
from cryo3d.report.palette import OUTCOME_DARK, class_colours
from cryo3d.report.rendering import new_figure, save_figure

__all__ = ["render_class_curves", "class_curves_figure", "render_confusion", "render_training", "read_jsonl"]


def render_class_curves(
    path: str | Path,
    names: Sequence[str],
    scores: Mapping[str, np.ndarray],
    is_tp: Mapping[str, np.ndarray] | None,
    n_gt: Mapping[str, int] | None,
    thresholds: Mapping[str, float] | None,
    colours: Mapping[str, str] | None = None,
    beta: float = 4.0,
) -> dict:
    """Draw :func:`class_curves_figure` and write it as a PNG to ``path``; returns its record."""
    fig, rec = class_curves_figure(names, scores, is_tp, n_gt, thresholds, colours, beta)
    save_figure(fig, path)
    rec["file"] = Path(path).name
    return rec


def class_curves_figure(
    names: Sequence[str],
    scores: Mapping[str, np.ndarray],
    is_tp: Mapping[str, np.ndarray] | None,
    n_gt: Mapping[str, int] | None,
    thresholds: Mapping[str, float] | None,
    colours: Mapping[str, str] | None = None,
    beta: float = 4.0,
) -> tuple[Any, dict]:
    """Per class: precision-recall, F-beta against threshold, score histograms of true and false positives.

    Three panels with one curve per class (few axes keep this cheap: matplotlib spends its
    time on axes and tick labels), in the class colours of every other figure. The legend
    sits in its own column, outside the axes. The histogram panel stacks the classes: per
    class a baseline, true positives drawn above it, false positives below (in the outcome
    colours). Without ground truth (``is_tp`` None) only the histograms of all scores are
    drawn. A class's chosen threshold is a dashed line; without thresholds the figure says
    that the threshold is unknown.

    Args:
        names: classes in order.
        scores: every prediction's score per class (all, not only those kept).
        is_tp: per class, whether each prediction is a true positive (greedy matching).
        n_gt: ground-truth particles per class.
        thresholds: the chosen threshold per class (marked), or None (unknown).
        colours: ``{class: hex}``; default :func:`cryo3d.report.palette.class_colours`.
        beta: F-beta's beta.

    Returns:
        ``(figure, record)``; the record holds the best threshold and F-beta per class (``best``)
        and ``threshold_note`` (empty when every class has a threshold).
    """
    col = dict(colours) if colours is not None else class_colours(list(names))
    has_gt = is_tp is not None
    nh = len(names)
    fig = new_figure(1300 if has_gt else 640, 380 + (28 * max(0, nh - 6)))
    best = {}
    bins = np.linspace(0, 1, 41)
    if has_gt:
        pax = fig.add_axes([0.05, 0.13, 0.22, 0.77])
        fax = fig.add_axes([0.32, 0.13, 0.22, 0.77])
        hax = fig.add_axes([0.78, 0.13, 0.2, 0.77])
    else:
        hax = fig.add_axes([0.36, 0.13, 0.6, 0.77])
    unknown = [n for n in names if thresholds is None or n not in thresholds]
    for i, n in enumerate(names):
        s = np.asarray(scores.get(n, np.zeros(0)), np.float64)
        t_chosen = None if thresholds is None else thresholds.get(n)
        tp = np.asarray(is_tp.get(n, np.zeros(0, bool)), bool) if has_gt else np.zeros(s.size, bool)
        if has_gt:
            cur = pr_curve(s, tp, int(n_gt.get(n, 0)), beta)
            if cur["threshold"].size:
                b = cur["best"]
                pax.plot(cur["recall"], cur["precision"], color=col[n], lw=1.3, drawstyle="steps-post",
                         label=f"{n} ({int(n_gt.get(n, 0))})")
                pax.plot(cur["recall"][b], cur["precision"][b], "o", color=col[n], ms=5)
                fax.plot(cur["threshold"], cur["fbeta"], color=col[n], lw=1.3, label=n)
                fax.plot(cur["threshold"][b], cur["fbeta"][b], "o", color=col[n], ms=5)
                best[n] = {"threshold": float(cur["threshold"][b]), "fbeta": float(cur["fbeta"][b])}
            if t_chosen is not None:
                fax.axvline(t_chosen, color=col[n], ls="--", lw=1.0, gid=f"threshold:{n}")
        # stacked histograms: class i at baseline -i; TP up, FP down (each scaled to its row)
        h_tp, _ = np.histogram(s[tp], bins)
        h_fp, _ = np.histogram(s[~tp], bins)
        scale = 0.45 / max(1, int(max(h_tp.max(initial=0), h_fp.max(initial=0))))
        base = -float(i)
        up = h_tp * scale if has_gt else (h_fp + h_tp) * scale * 2
        hax.stairs(base + up, bins, baseline=base, fill=True, color=OUTCOME_DARK[TP] if has_gt else col[n], alpha=0.8)
        if has_gt:
            hax.stairs(base - h_fp * scale, bins, baseline=base, fill=True, color=OUTCOME_DARK[FP], alpha=0.8)
        if t_chosen is not None:
            hax.plot([t_chosen, t_chosen], [base - 0.45, base + 0.45], color=col[n], ls="--", lw=1.2,
                     gid=f"threshold:{n}")
        hax.axhline(base, color="0.6", lw=0.5)
    hax.set_yticks([-float(i) for i in range(nh)], [f"{n} ({np.asarray(scores.get(n, [])).size})" for n in names],
                   fontsize=7)
    for lab, n in zip(hax.get_yticklabels(), names):
        lab.set_color(col[n])
    hax.set_xlim(0, 1)
    hax.set_ylim(-nh + 0.4, 0.6)
    hax.set_xlabel("score", fontsize=8)
    hax.set_title("scores: true pos. up (green), false pos. down (red)" if has_gt
                  else "score histogram per class (picks)", fontsize=8)
    if has_gt:
        pax.set(xlim=(0, 1.02), ylim=(0, 1.02))
        pax.set_xlabel("recall", fontsize=8)
        pax.set_ylabel("precision", fontsize=8)
        pax.set_title("precision-recall (dot: best F; true particles in brackets)", fontsize=8)
        handles, labels = pax.get_legend_handles_labels()
        if handles:  # its own column between the F-beta panel and the histograms: never over a curve
            fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.56, 0.9), fontsize=7, frameon=False,
                       title="class (true particles)", title_fontsize=7)
        fax.set(xlim=(0, 1), ylim=(0, 1.02))
        fax.set_xlabel("score threshold", fontsize=8)
        fax.set_ylabel(f"F{beta:g}", fontsize=8)
        fax.set_title(f"F{beta:g} against threshold (dot: best, dashed: chosen)", fontsize=8)
    note = ""
    if unknown:
        note = ("threshold unknown (none given): no dashed line" if len(unknown) == nh
                else f"threshold unknown for {', '.join(unknown)}: no dashed line")
        fig.text(0.01, 0.01, note, fontsize=8, color="0.25", ha="left", va="bottom", gid="threshold-note")
    for ax in fig.axes:
        ax.tick_params(labelsize=7)
    return fig, {"best": best, "threshold_note": note}


def render_confusion(path: str | Path, out: Outcomes) -> dict:
    """The class confusion as a matrix of counts (colour: share of the row)."""
    C = len(out.labels)
    rows = out.labels + ["background (false pick)"]
    cols = out.labels + ["missed"]
    m = out.confusion
    frac = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    cell = 64
    W, H = 190 + cell * (C + 1) + 20, 150 + cell * (C + 1) + 40  # pixels: labels left, tick labels below
    fig = new_figure(W, H)
    ax = fig.add_axes([190 / W, 150 / H, cell * (C + 1) / W, cell * (C + 1) / H])
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
