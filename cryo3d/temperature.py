"""Score temperature: picks' probabilities that keep their order and say how often a pick is right.

A pick's score is ``sigmoid(z)`` of the network's logit ``z`` at the peak. A confident model
gives logits beyond about 36.7 (:data:`LOGIT_CEILING`), where even a float64 sigmoid is
exactly 1.0: on a tilt-series benchmark 3 % of one prediction's picks tied there, so no
threshold could rank them. The same model is also over-confident: picks of small classes
scored 0.99999 were right one time in eight (the validation's calibration line).

Temperature scaling (Guo et al., *On Calibration of Modern Neural Networks*, ICML 2017)
answers both with one number per class: scores become ``sigmoid(z / T)``, ``T`` fitted on
the validation picks by maximum likelihood of "this pick is right" (a true positive of the
CZII matching). The transform is monotonic, so the picks a threshold keeps are unchanged
when the threshold is tempered the same way (:func:`temper`); only the values change,
towards calibration, and they saturate only beyond a logit of ``36.7 T``.

``T`` is bounded below by 1 (:data:`MIN_TEMPERATURE`): a sharpening temperature would bring
the ties back. A class with too few validation picks to fit (:data:`MIN_FIT_PICKS`), or with
no true or no false pick, takes the temperature fitted on all classes' picks pooled.

Why by hand: a one-parameter likelihood on a few hundred picks (SciPy's bounded scalar
minimiser does the search); MONAI and ignite have no calibration of detection scores.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit

from cryo3d.peaks import logit_thresholds

__all__ = ["LOGIT_CEILING", "MIN_TEMPERATURE", "MAX_TEMPERATURE", "MIN_FIT_PICKS", "score_logits", "temper",
           "fit_temperature", "fit_class_temperatures"]

#: The logit above which a float64 sigmoid is exactly 1.0 (``log(2**53)``): saturated scores
#: are read back as this logit.
LOGIT_CEILING = math.log(2.0**53)
#: Temperatures are never below this (scores are never sharpened: they would tie again).
MIN_TEMPERATURE = 1.0
#: Nor above this (a class whose picks are all wrong would otherwise flatten every score to 0.5).
MAX_TEMPERATURE = 100.0
#: Fewer validation picks than this in a class: the class takes the pooled temperature.
MIN_FIT_PICKS = 20


def score_logits(scores: np.ndarray) -> np.ndarray:
    """Probabilities -> logits (float64), a saturated 1.0 read as :data:`LOGIT_CEILING`, 0 as its negative."""
    return np.clip(logit_thresholds(scores), -LOGIT_CEILING, LOGIT_CEILING)


def temper(scores: np.ndarray | Sequence[float] | float, temperature: np.ndarray | Sequence[float] | float) -> np.ndarray:
    """Probabilities ``p`` (scores or thresholds) -> ``sigmoid(logit(p) / T)``, elementwise (broadcast).

    Monotonic in ``p`` for any ``T > 0``: ``p >= t`` exactly when ``temper(p, T) >= temper(t, T)``,
    up to float64 rounding (none where ``p`` is exactly a threshold; a tempered value below
    about ``1e-308`` underflows to 0). ``p`` of exactly 0 or 1 stays there, and ``T = 1`` returns
    ``p`` exactly.

    Args:
        scores: probabilities in ``[0, 1]``.
        temperature: ``T > 0``, one or broadcastable to ``scores`` (e.g. per pick, from its class).

    Returns:
        float64 array of the tempered probabilities.

    Example:
        >>> float(temper(0.5, 3.0)), round(float(temper(0.9, 2.0)), 4)
        (0.5, 0.75)
    """
    p = np.asarray(scores, dtype=np.float64)
    t = np.asarray(temperature, dtype=np.float64)
    if np.any(~(t > 0)):
        raise ValueError(f"temperature must be > 0, got {t.tolist()}")
    out = expit(logit_thresholds(p) / t)  # SciPy's sigmoid: 0 and 1 at -+inf, no underflow until exp(-745)
    return np.where(t == 1.0, p, out)  # T = 1 is the identity, exactly (not up to a rounding of logit and back)


def _nll(temperature: float, z_all: np.ndarray, z_tp: np.ndarray) -> float:
    """Negative log-likelihood of "right" (``z_tp``) and "wrong" (the rest of ``z_all``) at ``T``.

    ``-sum_tp log s - sum_fp log(1 - s) = sum_all softplus(z / T) - sum_tp z / T`` with
    ``s = sigmoid(z / T)``, since ``-log(1 - s) = softplus(z / T)`` and ``log s - log(1 - s) = z / T``.
    """
    return float(np.logaddexp(0.0, z_all / temperature).sum() - z_tp.sum() / temperature)


def fit_temperature(pred_scores: np.ndarray, tp_scores: np.ndarray) -> float:
    """The temperature that makes ``pred_scores`` most likely to say which picks are right.

    Args:
        pred_scores: every pick's probability (one class or pooled).
        tp_scores: the probabilities of the picks that are true positives (a sub-multiset of
            ``pred_scores``; :class:`cryo3d.metrics._ClassCounts` keeps both).

    Returns:
        ``T`` in ``[MIN_TEMPERATURE, MAX_TEMPERATURE]``: :data:`MIN_TEMPERATURE` without picks,
        or when every pick is right (nothing to soften).
    """
    z_all, z_tp = score_logits(pred_scores), score_logits(tp_scores)
    if z_all.size == 0 or z_tp.size >= z_all.size:
        return MIN_TEMPERATURE
    res = minimize_scalar(lambda lt: _nll(math.exp(lt), z_all, z_tp), bounds=(math.log(MIN_TEMPERATURE),
                          math.log(MAX_TEMPERATURE)), method="bounded", options={"xatol": 1e-4})
    return float(min(max(math.exp(res.x), MIN_TEMPERATURE), MAX_TEMPERATURE))


def fit_class_temperatures(pred_scores: Sequence[np.ndarray], tp_scores: Sequence[np.ndarray]) -> np.ndarray:
    """One temperature per class (:func:`fit_temperature`), the pooled one where a class cannot be fitted.

    A class is fitted on its own when it has at least :data:`MIN_FIT_PICKS` picks, at least
    one right and one wrong; otherwise it takes the temperature of all classes' picks pooled.

    Args:
        pred_scores: per class, every pick's probability.
        tp_scores: per class, the true positives' probabilities.

    Returns:
        float64 ``[C]``.
    """
    pooled = fit_temperature(np.concatenate([np.zeros(0), *map(np.ravel, pred_scores)]),
                             np.concatenate([np.zeros(0), *map(np.ravel, tp_scores)]))
    out = np.full(len(pred_scores), pooled)
    for c, (p, t) in enumerate(zip(pred_scores, tp_scores)):
        if len(p) >= MIN_FIT_PICKS and 0 < len(t) < len(p):
            out[c] = fit_temperature(p, t)
    return out
