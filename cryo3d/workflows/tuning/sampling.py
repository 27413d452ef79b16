"""Define-by-run sampling of one trial's bundle overrides, and the proof that the space is valid.

:func:`suggest_overrides` draws the parameters that apply to a trial (see
:func:`builtin_conditions` and each spec's ``when:``), merges ``key.field`` entries into their
mappings and finishes the beta schedule; :func:`check_space` runs it on every corner of the
space before the first trial.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
from typing import Any, Mapping, NamedTuple

import optuna

from cryo3d.schedules import KINDS, BetaSchedule
from cryo3d.workflows.tuning.space import SCHEDULE_FIELDS, ParamSpec, TuneConfig, check_keys, split_key

logger = logging.getLogger(__name__)

FUZZY_LOSSES = ("fuzzy", "combined")
#: Keys whose corners :func:`check_space` combines with every ``beta_schedule.*`` corner.
_SCHEDULE_CONTEXT = ("loss_kind", "max_epochs", "epoch_length", "val_interval", "beta_unit")
_MAX_CORNERS = 20000


def builtin_conditions(name: str) -> dict[str, tuple]:
    """Conditions :func:`suggest_overrides` applies to a parameter whatever the YAML says.

    ``fuzzy_weight`` only for ``combined``; ``pos_weight`` only with a BCE part; every
    ``beta_schedule.*`` only with a fuzzy part; ``end``, ``total``, ``warmup`` not for a
    constant schedule; ``step_size`` only for ``step``; ``gamma`` only for ``step`` and
    ``exponential``.
    """
    if name == "fuzzy_weight":
        return {"loss_kind": ("combined",)}
    if name == "pos_weight":
        return {"loss_kind": ("bce", "combined")}
    head, sub = split_key(name)
    if head != "beta_schedule" or sub is None:
        return {}
    cond: dict[str, tuple] = {"loss_kind": FUZZY_LOSSES}
    readers = tuple(k for k, fields in SCHEDULE_FIELDS.items() if sub in fields)
    if sub != "kind" and sub != "start":
        cond["beta_schedule.kind"] = readers
    return cond


def _conditions(spec: ParamSpec) -> dict[str, tuple]:
    cond = builtin_conditions(spec.name)
    for k, v in spec.when.items():
        cond[k] = tuple(x for x in cond[k] if x in v) if k in cond else v
    return cond


def draw_order(space: Mapping[str, ParamSpec]) -> list[str]:
    """Space keys in YAML order, moved after the searched keys their conditions read."""
    deps = {n: [k for k in _conditions(s) if k in space and k != n] for n, s in space.items()}
    order: list[str] = []
    pending = list(space)
    while pending:
        ready = [n for n in pending if all(d in order for d in deps[n])]
        if not ready:
            raise ValueError(f"tune config: the conditions of {pending} depend on each other in a cycle")
        order.append(ready[0])
        pending.remove(ready[0])
    return order


class Overrides(NamedTuple):
    """What one trial trains with.

    Attributes:
        values: Every override passed to the bundle (fixed and drawn, dotted keys merged into
            their mappings).
        export: The searched keys only, in the form written to ``best_overrides.yaml`` (a beta
            schedule whose ``total`` was not searched reads ``"@max_epochs"``).
        params: The drawn Optuna parameters.
    """

    values: dict
    export: dict
    params: dict


def nest_overrides(flat: Mapping[str, Any], defaults: Mapping[str, Any],
                   base: Mapping[str, Any] | None = None) -> dict:
    """Merge ``key.field`` entries into copies of their mappings (from ``base``, else the bundle)."""
    out = copy.deepcopy(dict(base or {}))
    for key, value in flat.items():
        head, sub = split_key(key)
        if sub is None:
            out[head] = copy.deepcopy(value)
        else:
            cur = out.get(head, defaults.get(head))
            out[head] = {**copy.deepcopy(dict(cur or {})), sub: copy.deepcopy(value)}
    return out


def trial_value(key: str, drawn: Mapping[str, Any], fixed: Mapping[str, Any], defaults: Mapping[str, Any]) -> Any:
    """A key's value for this trial: drawn, else fixed (nested), else the bundle's default."""
    if key in drawn:
        return drawn[key]
    head, sub = split_key(key)
    src = fixed if head in fixed else defaults
    v = src.get(head)
    if sub is None:
        return v
    return v.get(sub) if isinstance(v, Mapping) else None


def _is_reference(v: Any) -> bool:
    return isinstance(v, str) and v[:1] in ("@", "$", "%")


def _finish_schedule(sched: Mapping[str, Any], explicit_total: bool, max_epochs: Any, epoch_length: Any,
                     unit: Any) -> tuple[dict, dict]:
    """Drop the fields the kind ignores, set ``total`` from the run length unless given; validate.

    Returns:
        The schedule for training (numbers) and for export (``total: "@max_epochs"`` when it
        followed the run length in epochs).
    """
    kind = sched.get("kind", "constant")
    if kind not in KINDS:
        raise ValueError(f"beta_schedule.kind: expected one of {KINDS}, got {kind!r}")
    d = {k: sched[k] for k in SCHEDULE_FIELDS[kind] if k in sched and sched[k] is not None}
    export = dict(d)
    if kind != "constant" and (not explicit_total or _is_reference(d.get("total"))):
        if unit == "iteration":
            if epoch_length is None or _is_reference(epoch_length):
                raise ValueError("beta_schedule.total: with beta_unit iteration and no epoch_length, "
                                 "set beta_schedule.total (fixed or searched)")
            d["total"] = export["total"] = int(max_epochs) * int(epoch_length)
        else:
            d["total"] = int(max_epochs)
            export["total"] = "@max_epochs"
    try:
        BetaSchedule(**d)
    except (TypeError, ValueError) as e:
        hint = ""
        if "must exceed warmup" in str(e) and export.get("total") == "@max_epochs":
            hint = " (total follows max_epochs: raise max_epochs or lower beta_schedule.warmup)"
        raise ValueError(f"beta_schedule {d}: {e}{hint}") from None
    return d, export


def suggest_overrides(trial: Any, cfg: TuneConfig, defaults: Mapping[str, Any]) -> Overrides:
    """Draw one trial's bundle overrides (define-by-run; see :func:`builtin_conditions`).

    Args:
        trial: An ``optuna.trial.Trial`` or ``optuna.trial.FixedTrial``.
        cfg: The search space and fixed overrides.
        defaults: :func:`~cryo3d.workflows.tuning.space.bundle_defaults` of the bundle the
            trial runs.

    Returns:
        The trial's :class:`Overrides`.

    Raises:
        ValueError: When the drawn values make an invalid beta schedule or no validation
            would run.
    """
    fixed = nest_overrides(cfg.fixed, defaults)
    drawn: dict[str, Any] = {}
    for name in draw_order(cfg.space):
        spec = cfg.space[name]
        active = True
        for key, allowed in _conditions(spec).items():
            if key in cfg.space and key not in drawn:  # that parameter does not apply to this trial
                active = False
            elif trial_value(key, drawn, fixed, defaults) not in allowed:
                active = False
        if active:
            drawn[name] = spec.suggest(trial)
    values = nest_overrides(drawn, defaults, base=fixed)
    export = {h: values[h] for h in dict.fromkeys(split_key(k)[0] for k in drawn)}

    max_epochs = trial_value("max_epochs", drawn, fixed, defaults)
    val_interval = trial_value("val_interval", drawn, fixed, defaults)
    if isinstance(max_epochs, int) and isinstance(val_interval, int) and val_interval > max_epochs:
        raise ValueError(f"val_interval ({val_interval}) exceeds max_epochs ({max_epochs}): no validation "
                         "would run, so there is nothing to score")
    if "beta_schedule" in values:
        explicit = ("beta_schedule.total" in drawn or "beta_schedule.total" in cfg.fixed
                    or (isinstance(cfg.fixed.get("beta_schedule"), Mapping) and "total" in cfg.fixed["beta_schedule"]))
        sched, sched_export = _finish_schedule(values["beta_schedule"], explicit, max_epochs,
                                               trial_value("epoch_length", drawn, fixed, defaults),
                                               trial_value("beta_unit", drawn, fixed, defaults))
        values["beta_schedule"] = sched
        if "beta_schedule" in export:
            export["beta_schedule"] = sched_export
    return Overrides(values, export, drawn)


def check_space(cfg: TuneConfig, defaults: Mapping[str, Any]) -> int:
    """Check keys and prove that every corner of the space builds a valid trial.

    Every combination of the extreme values of ``beta_schedule.*``, ``loss_kind``,
    ``max_epochs``, ``epoch_length``, ``val_interval`` and ``beta_unit`` (those searched) runs
    through :func:`suggest_overrides`. The schedule's constraints (``total > warmup``,
    ``step_size > 0``, positive ``start``/``end`` for a geometric schedule) are monotone in each
    value, so the corners cover the whole box.

    Args:
        cfg: The search space and fixed overrides.
        defaults: The raw top-level keys of the training bundle.

    Returns:
        Number of combinations checked.

    Raises:
        ValueError: Naming the first invalid combination and why.
    """
    check_keys(cfg, defaults)
    draw_order(cfg.space)
    keys = [k for k in cfg.space if split_key(k)[0] == "beta_schedule" or k in _SCHEDULE_CONTEXT]
    keys += [c for k in list(keys) for c in _conditions(cfg.space[k]) if c in cfg.space and c not in keys]
    keys = list(dict.fromkeys(keys))
    base = {k: s.corners()[0] for k, s in cfg.space.items()}
    total = math.prod(len(cfg.space[k].corners()) for k in keys)
    if total > _MAX_CORNERS:
        logger.warning("check_space: %d corner combinations; checking the first %d only", total, _MAX_CORNERS)
    n = 0
    for combo in itertools.islice(itertools.product(*(cfg.space[k].corners() for k in keys)), _MAX_CORNERS):
        params = {**base, **dict(zip(keys, combo))}
        try:
            suggest_overrides(optuna.trial.FixedTrial(params), cfg, defaults)
        except ValueError as e:
            shown = {k: params[k] for k in keys}
            raise ValueError(f"tune config: the search space allows an invalid trial {shown}: {e}") from None
        n += 1
    return n
