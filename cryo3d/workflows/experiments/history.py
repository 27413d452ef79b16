"""A run's validation history in a few numbers: best, final, the drop between them, epochs to converge."""

from __future__ import annotations

from typing import Mapping, Sequence

#: Fraction of a run's best validation score that counts as converged.
CONVERGENCE_FRACTION = 0.95


def by_epoch(history: Sequence[Mapping]) -> list[dict]:
    """Validation records in epoch order, one per epoch (a re-validated epoch keeps its last record)."""
    recs: dict[int, dict] = {}
    for i, h in enumerate(history):
        e = h.get("epoch")
        recs[int(e) if e is not None else i + 1] = dict(h)
    return [dict(recs[e], epoch=e) for e in sorted(recs)]


def epochs_to_convergence(history: Sequence[Mapping], fraction: float = CONVERGENCE_FRACTION) -> int | None:
    """First epoch whose validation score reaches ``fraction`` of the run's best; None if the best is not > 0."""
    recs = by_epoch(history)
    if not recs:
        return None
    best = max(r["score"] for r in recs)
    if not best > 0:
        return None
    return next(r["epoch"] for r in recs if r["score"] >= fraction * best)


def summarize_history(history: Sequence[Mapping], fraction: float = CONVERGENCE_FRACTION) -> dict:
    """One run's validation history in a few numbers.

    Returns:
        ``best`` (score) and ``best_epoch`` (first epoch reaching it), ``final`` and
        ``final_epoch`` (last validation), ``drop`` (``best - final``: over-fitting shows
        as a large drop), ``epochs_to_conv`` (:func:`epochs_to_convergence`),
        ``n_validations``, and ``f_<class>``: each class's F-beta at the best epoch.
        NaN / None when there was no validation.
    """
    recs = by_epoch(history)
    if not recs:
        return {"best": float("nan"), "best_epoch": None, "final": float("nan"), "final_epoch": None,
                "drop": float("nan"), "epochs_to_conv": None, "n_validations": 0}
    best = max(recs, key=lambda r: r["score"])  # max keeps the first of equal scores
    out = {
        "best": float(best["score"]), "best_epoch": best["epoch"],
        "final": float(recs[-1]["score"]), "final_epoch": recs[-1]["epoch"],
        "drop": float(best["score"] - recs[-1]["score"]),
        "epochs_to_conv": epochs_to_convergence(recs, fraction),
        "n_validations": len(recs),
    }
    for cls, v in (best.get("per_class") or {}).items():
        out[f"f_{cls}"] = float(v["fbeta"])
    return out
