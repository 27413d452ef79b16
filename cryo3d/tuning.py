"""Optuna studies over the training bundle: ``cryo3d tune``.

A study draws bundle overrides from a search space (``bundles/cryo3d_picker/configs/tune.yaml``),
trains the bundle with them in this process (:func:`cryo3d.training.run_training`) and maximises
the best validation particle F-beta of the run. Its parts:

* :class:`ParamSpec`, :class:`TuneConfig`: the search space (one bundle key per entry, dotted
  keys ``beta_schedule.start`` for one field of a mapping-valued key) and the ``fixed``
  overrides every trial shares; :func:`check_space` proves before the first trial that every
  combination the space allows builds a valid :class:`cryo3d.schedules.BetaSchedule`.
* :func:`suggest_overrides`: define-by-run sampling. Parameters that do not apply are not
  drawn (``fuzzy_weight`` only for the combined loss, ``beta_schedule.*`` only when the loss has
  a fuzzy part, ``end``/``total``/``warmup`` not for a constant schedule, ``step_size`` only for
  ``step``, ``gamma`` only for ``step``/``exponential``), plus any ``when:`` the user writes.
* :class:`OptunaPruningHandler`: the ignite handler that reports each validation score to the
  trial (step = trainer epoch) and stops the trainer when the pruner says so.
* :func:`run_study`: storage (SQLite in the run folder, or any Optuna RDB URL), heartbeats and
  retry of killed trials, the sampler (TPE) and pruner (median / Hyperband), the trial loop up to
  ``n_trials`` finished (complete + pruned) trials, the trials table, parameter importances and
  the best trial exported as ``best_overrides.yaml``.
* :func:`add_tune_parser`, :func:`cmd_tune`: the ``cryo3d tune`` command.

A killed trial: every running trial writes a heartbeat to the storage; when a worker starts
(and before each trial) trials whose heartbeat is older than ``grace_period`` seconds are marked
FAIL and re-queued once more with the same parameters (Optuna's ``RetryFailedTrialCallback``).
The retry trains from scratch in its own folder, ``trial_<its number>``: trials never share a
folder, so no trial resumes another's checkpoint by accident.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import logging
import math
import os
import shutil
import socket
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence

import yaml

from cryo3d.io.atomic import write_text_atomic
from cryo3d.workflows.bundle import ConfigFiles, config_files, config_path, parse_bundle, raw_bundle_keys

logger = logging.getLogger(__name__)

#: The default search space.
DEFAULT_TUNE_CONFIG = config_path("tune.yaml")
#: The training bundle the trials run.
DEFAULT_BUNDLE_CONFIG = config_path("train.yaml")

SPEC_TYPES = ("float", "int", "categorical")
PRUNERS = ("median", "hyperband", "none")
FUZZY_LOSSES = ("fuzzy", "combined")
#: The fields of a beta schedule each kind reads (the others are dropped from the override).
SCHEDULE_FIELDS = {
    "constant": ("kind", "start"),
    "linear": ("kind", "start", "end", "total", "warmup"),
    "cosine": ("kind", "start", "end", "total", "warmup"),
    "step": ("kind", "start", "end", "total", "warmup", "step_size", "gamma"),
    "exponential": ("kind", "start", "end", "total", "warmup", "gamma"),
}
#: Keys ``cryo3d tune`` sets itself.
RESERVED_KEYS = ("output_dir",)
#: Keys whose corners :func:`check_space` combines with every ``beta_schedule.*`` corner.
_SCHEDULE_CONTEXT = ("loss_kind", "max_epochs", "epoch_length", "val_interval", "beta_unit")
_MAX_CORNERS = 20000


# ---------------------------------------------------------------------------- search space


def _number(value: Any, where: str) -> float:
    """A YAML number, accepting ``1e-4`` (which YAML 1.1 reads as a string)."""
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a number, got {value!r}") from None


@dataclass(frozen=True)
class ParamSpec:
    """One searched bundle key.

    Parameters
    ----------
    name : str
        Bundle key (``learning_rate``) or ``key.field`` of a mapping-valued key
        (``beta_schedule.start``); also the Optuna parameter name.
    type : {"float", "int", "categorical"}
    low, high : float or int
        Inclusive range (``float`` / ``int``).
    log : bool
        Sample on a log scale (``low > 0``).
    step : float or int, optional
        Grid step (not with ``log``).
    choices : tuple
        Values of a ``categorical`` (None, bool, int, float or str).
    when : dict
        Extra conditions ``{other key: allowed values}``: the parameter is drawn only when
        every other key (drawn earlier, fixed, or the bundle's default) has an allowed value.
    """

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()
    when: dict[str, tuple] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, name: str, spec: Mapping[str, Any]) -> "ParamSpec":
        """Check and build a spec from its YAML mapping (``where`` in errors is ``space.<name>``)."""
        where = f"space.{name}"
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where}: expected a mapping like {{type: float, low: 0.1, high: 1}}, got {spec!r}")
        allowed = {"type", "low", "high", "log", "step", "choices", "when"}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {unknown}; expected some of {sorted(allowed)}")
        kind = spec.get("type")
        if kind not in SPEC_TYPES:
            raise ValueError(f"{where}.type: expected one of {SPEC_TYPES}, got {kind!r}")
        when = {}
        for k, v in (spec.get("when") or {}).items():
            when[str(k)] = tuple(v) if isinstance(v, (list, tuple)) else (v,)
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, (list, tuple)) or not choices:
                raise ValueError(f"{where}.choices: expected a non-empty list, got {choices!r}")
            for c in choices:
                if c is not None and not isinstance(c, (bool, int, float, str)):
                    raise ValueError(f"{where}.choices: Optuna takes None, bool, int, float or str, got {c!r}")
            extra = sorted({"low", "high", "log", "step"} & set(spec))
            if extra:
                raise ValueError(f"{where}: a categorical takes choices, not {extra}")
            return cls(name, kind, choices=tuple(choices), when=when)
        if "choices" in spec:
            raise ValueError(f"{where}: choices belong to type categorical, not {kind}")
        if "low" not in spec or "high" not in spec:
            raise ValueError(f"{where}: type {kind} needs low and high")
        low, high = _number(spec["low"], f"{where}.low"), _number(spec["high"], f"{where}.high")
        step = None if spec.get("step") is None else _number(spec["step"], f"{where}.step")
        log = bool(spec.get("log", False))
        if low > high:
            raise ValueError(f"{where}: low ({low}) must not exceed high ({high})")
        if log and low <= 0:
            raise ValueError(f"{where}: a log scale needs low > 0, got {low}")
        if log and step is not None:
            raise ValueError(f"{where}: log and step cannot be combined")
        if step is not None and step <= 0:
            raise ValueError(f"{where}.step: must be > 0, got {step}")
        if kind == "int":
            for label, v in (("low", low), ("high", high), ("step", step)):
                if v is not None and v != int(v):
                    raise ValueError(f"{where}.{label}: an int parameter needs an integer, got {v}")
            return cls(name, kind, int(low), int(high), log, None if step is None else int(step), when=when)
        return cls(name, kind, low, high, log, step, when=when)

    def to_dict(self) -> dict:
        """The YAML mapping of this spec."""
        d: dict[str, Any] = {"type": self.type}
        if self.type == "categorical":
            d["choices"] = list(self.choices)
        else:
            d.update(low=self.low, high=self.high)
            if self.log:
                d["log"] = True
            if self.step is not None:
                d["step"] = self.step
        if self.when:
            d["when"] = {k: list(v) for k, v in self.when.items()}
        return d

    def suggest(self, trial: Any) -> Any:
        """Draw this parameter from an Optuna trial."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def corners(self) -> list:
        """The extreme values (``low``, ``high``) or every choice: what :func:`check_space` tries."""
        if self.type == "categorical":
            return list(self.choices)
        return [self.low] if self.low == self.high else [self.low, self.high]


@dataclass
class TuneConfig:
    """A search space and the overrides every trial shares.

    ``space`` maps bundle keys (or ``key.field``) to :class:`ParamSpec`, in drawing order;
    ``fixed`` maps bundle keys (or ``key.field``) to values.
    """

    space: dict[str, ParamSpec]
    fixed: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "tune config") -> "TuneConfig":
        if not isinstance(d, Mapping):
            raise ValueError(f"{source}: expected a mapping with 'space' (and 'fixed'), got {type(d).__name__}")
        unknown = sorted(set(d) - {"space", "fixed"})
        if unknown:
            raise ValueError(f"{source}: unknown top-level key(s) {unknown}; expected 'space' and 'fixed'")
        space_d = d.get("space") or {}
        if not isinstance(space_d, Mapping) or not space_d:
            raise ValueError(f"{source}: 'space' must be a non-empty mapping of bundle key -> spec")
        fixed = dict(d.get("fixed") or {})
        check_plain_data(fixed, f"{source}: fixed")
        check_plain_data(dict(space_d), f"{source}: space")
        space = {str(k): ParamSpec.from_dict(str(k), v) for k, v in space_d.items()}
        both = sorted(set(space) & set(fixed))
        if both:
            raise ValueError(f"{source}: key(s) {both} are both searched (space) and fixed")
        return cls(space, fixed)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TuneConfig":
        """Read a tune YAML file (``space:`` and ``fixed:``)."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"tune config {p} not found")
        return cls.from_dict(yaml.safe_load(p.read_text()) or {}, source=str(p))

    def to_dict(self) -> dict:
        return {"space": {k: s.to_dict() for k, s in self.space.items()}, "fixed": copy.deepcopy(self.fixed)}


def bundle_defaults(bundle_config: ConfigFiles = None) -> dict:
    """The raw (unevaluated) top-level keys of the bundle config file(s), later files winning."""
    return raw_bundle_keys(bundle_config)


def _split(key: str) -> tuple[str, str | None]:
    head, _, sub = key.partition(".")
    return head, (sub or None)


def _check_keys(cfg: TuneConfig, defaults: Mapping[str, Any]) -> None:
    """Every key names a bundle key (a mapping one for ``key.field``); ``cryo3d tune`` owns ``output_dir``."""
    for where, keys in (("space", cfg.space), ("fixed", cfg.fixed)):
        for key in keys:
            head, sub = _split(key)
            if head in RESERVED_KEYS:
                raise ValueError(f"{where}.{key}: set by cryo3d tune (each trial trains into <run folder>/trial_<n>)")
            if head not in defaults:
                raise ValueError(f"{where}.{key}: {head!r} is not a key of the training bundle "
                                 "(the tunable keys are at the top of train.yaml)")
            if sub is not None:
                if "." in sub:
                    raise ValueError(f"{where}.{key}: only one level of nesting (key.field) is supported")
                base = cfg.fixed.get(head, defaults[head])
                if not isinstance(base, Mapping):
                    raise ValueError(f"{where}.{key}: {head!r} is not a mapping in the bundle, so it has no fields")
                if head == "beta_schedule" and sub not in SCHEDULE_FIELDS["step"]:
                    raise ValueError(f"{where}.{key}: a beta schedule has no field {sub!r}; "
                                     f"expected one of {SCHEDULE_FIELDS['step']}")
    for name, spec in cfg.space.items():
        for other in spec.when:
            if _split(other)[0] not in defaults:
                raise ValueError(f"space.{name}.when: {other!r} is not a key of the training bundle")


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
    head, sub = _split(name)
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

    ``values``: every override passed to the bundle (fixed and drawn, dotted keys merged into
    their mappings). ``export``: the searched keys only, in the form written to
    ``best_overrides.yaml`` (a beta schedule whose ``total`` was not searched reads
    ``"@max_epochs"``). ``params``: the drawn Optuna parameters.
    """

    values: dict
    export: dict
    params: dict


def _nest(flat: Mapping[str, Any], defaults: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> dict:
    """Merge ``key.field`` entries into copies of their mappings (from ``base``, else the bundle)."""
    out = copy.deepcopy(dict(base or {}))
    for key, value in flat.items():
        head, sub = _split(key)
        if sub is None:
            out[head] = copy.deepcopy(value)
        else:
            cur = out.get(head, defaults.get(head))
            out[head] = {**copy.deepcopy(dict(cur or {})), sub: copy.deepcopy(value)}
    return out


def _lookup(key: str, drawn: Mapping[str, Any], fixed: Mapping[str, Any], defaults: Mapping[str, Any]) -> Any:
    """A key's value for this trial: drawn, else fixed (nested), else the bundle's default."""
    if key in drawn:
        return drawn[key]
    head, sub = _split(key)
    src = fixed if head in fixed else defaults
    v = src.get(head)
    if sub is None:
        return v
    return v.get(sub) if isinstance(v, Mapping) else None


#: MONAI config keys that instantiate or run code (``_target_``) or steer it.
_MONAI_SPECIAL_KEYS = ("_target_", "_path_", "_requires_", "_disabled_", "_mode_", "_desc_")


def check_plain_data(value: Any, where: str) -> None:
    """Refuse values that MONAI's config parser would run: the search space and ``fixed`` are data.

    A bundle config evaluates strings starting with ``$`` (Python expressions), reads ``%``
    macros (other config files, themselves code) and instantiates mappings with a
    ``_target_``. Overrides from ``tune.yaml`` and ``--fixed`` come from files and command
    lines a user may be handed, so they must stay plain values: such a string or mapping
    is refused with :class:`~cryo3d.errors.Cryo3DError` naming it, never passed on.
    ``@key`` references to other bundle keys stay allowed (they run nothing).
    """
    from cryo3d.errors import Cryo3DError

    if isinstance(value, str):
        if value.lstrip()[:1] in ("$", "%"):
            raise Cryo3DError(
                f"{where}: {value[:60]!r} would be run as code by the bundle ('$' expressions and '%' macros); "
                "tune settings are plain data (numbers, strings, lists, mappings): write the value itself"
            )
    elif isinstance(value, Mapping):
        for k, v in value.items():
            if str(k) in _MONAI_SPECIAL_KEYS:
                raise Cryo3DError(
                    f"{where}.{k}: {k!r} would make the bundle instantiate or run an object; "
                    "tune settings are plain data"
                )
            check_plain_data(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_plain_data(v, f"{where}[{i}]")


def _is_reference(v: Any) -> bool:
    return isinstance(v, str) and v[:1] in ("@", "$", "%")


def _finish_schedule(sched: Mapping[str, Any], explicit_total: bool, max_epochs: Any, epoch_length: Any,
                     unit: Any) -> tuple[dict, dict]:
    """Drop the fields the kind ignores, set ``total`` from the run length unless given; validate.

    Returns the schedule for training (numbers) and for export (``total: "@max_epochs"`` when
    it followed the run length in epochs).
    """
    from cryo3d.schedules import KINDS, BetaSchedule

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

    Parameters
    ----------
    trial : optuna.trial.Trial or optuna.trial.FixedTrial
    cfg : TuneConfig
    defaults : dict
        :func:`bundle_defaults` of the bundle the trial runs.

    Raises
    ------
    ValueError
        When the drawn values make an invalid beta schedule or no validation would run.
    """
    fixed = _nest(cfg.fixed, defaults)
    drawn: dict[str, Any] = {}
    for name in draw_order(cfg.space):
        spec = cfg.space[name]
        active = True
        for key, allowed in _conditions(spec).items():
            if key in cfg.space and key not in drawn:  # that parameter does not apply to this trial
                active = False
            elif _lookup(key, drawn, fixed, defaults) not in allowed:
                active = False
        if active:
            drawn[name] = spec.suggest(trial)
    values = _nest(drawn, defaults, base=fixed)
    export = {h: values[h] for h in dict.fromkeys(_split(k)[0] for k in drawn)}

    max_epochs = _lookup("max_epochs", drawn, fixed, defaults)
    val_interval = _lookup("val_interval", drawn, fixed, defaults)
    if isinstance(max_epochs, int) and isinstance(val_interval, int) and val_interval > max_epochs:
        raise ValueError(f"val_interval ({val_interval}) exceeds max_epochs ({max_epochs}): no validation "
                         "would run, so there is nothing to score")
    if "beta_schedule" in values:
        explicit = ("beta_schedule.total" in drawn or "beta_schedule.total" in cfg.fixed
                    or (isinstance(cfg.fixed.get("beta_schedule"), Mapping) and "total" in cfg.fixed["beta_schedule"]))
        sched, sched_export = _finish_schedule(values["beta_schedule"], explicit, max_epochs,
                                               _lookup("epoch_length", drawn, fixed, defaults),
                                               _lookup("beta_unit", drawn, fixed, defaults))
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

    Returns
    -------
    int
        Number of combinations checked.

    Raises
    ------
    ValueError
        Naming the first invalid combination and why.
    """
    import optuna

    _check_keys(cfg, defaults)
    draw_order(cfg.space)
    keys = [k for k in cfg.space if _split(k)[0] == "beta_schedule" or k in _SCHEDULE_CONTEXT]
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


# ---------------------------------------------------------------------------- pruning


class _TrainerHook:
    """Hands the trainer to an :class:`OptunaPruningHandler` (``run_training(trainer_handlers=[...])``)."""

    def __init__(self, handler: "OptunaPruningHandler") -> None:
        self.handler = handler

    def attach(self, engine: Any) -> None:
        self.handler.attach_trainer(engine)


def _quiet_loggers() -> None:
    """Warnings only from MONAI's and ignite's loggers (StatsHandler and others carry their own handlers)."""
    for name, lg in list(logging.root.manager.loggerDict.items()):
        if isinstance(lg, logging.Logger) and name.split(".")[0] in ("monai", "ignite", "cryo3d"):
            lg.setLevel(logging.WARNING)
    logging.getLogger("monai.bundle.workflows").setLevel(logging.ERROR)  # "Logging file is set to False"


class _QuietEngine:
    """Quietens an engine's logger and the handlers' loggers once the bundle has made them."""

    def attach(self, engine: Any) -> None:
        engine.logger.setLevel(logging.WARNING)
        _quiet_loggers()


class OptunaPruningHandler:
    """Ignite handler: report each validation score to an Optuna trial; stop training when pruned.

    Attach to the evaluator (``attach``) and give it the trainer (``attach_trainer``, or pass
    :attr:`trainer_hook` among ``run_training``'s ``trainer_handlers``). After every validation
    it calls ``trial.report(score, step=trainer epoch)``; when ``trial.should_prune()`` it calls
    ``trainer.terminate()`` (the run ends cleanly, checkpoints and logs closed) and records
    :attr:`pruned_epoch`; the objective then raises ``optuna.TrialPruned``
    (:meth:`raise_if_pruned`). Without a trainer it raises ``optuna.TrialPruned`` from the
    handler itself.

    optuna-integration's ``PyTorchIgnitePruningHandler`` is the same idea, but it raises
    ``TrialPruned`` inside the engines (MONAI's handlers log it as a failed run and nothing
    closes the run cleanly) and it is another package; hence this small class.

    Parameters
    ----------
    trial : optuna.trial.Trial
    metric_name : str, optional
        Evaluator metric to report (default: the evaluator's key metric, ``val_fbeta``).
    """

    def __init__(self, trial: Any, metric_name: str | None = None) -> None:
        self.trial = trial
        self.metric_name = metric_name
        self.trainer: Any = None
        self.pruned_epoch: int | None = None
        self.reported: dict[int, float] = {}

    @property
    def trainer_hook(self) -> _TrainerHook:
        return _TrainerHook(self)

    @property
    def pruned(self) -> bool:
        return self.pruned_epoch is not None

    def attach(self, engine: Any) -> None:
        """Register on the evaluator's ``EPOCH_COMPLETED`` (after its metrics are computed)."""
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def attach_trainer(self, trainer: Any) -> None:
        self.trainer = trainer

    def __call__(self, engine: Any) -> None:
        import optuna

        name = self.metric_name or getattr(engine.state, "key_metric_name", None) or "val_fbeta"
        metrics = engine.state.metrics
        if name not in metrics:
            raise ValueError(f"OptunaPruningHandler: metric {name!r} not among the evaluator's metrics {sorted(metrics)}")
        score = float(metrics[name])
        step = int(self.trainer.state.epoch if self.trainer is not None else engine.state.epoch)
        self.trial.report(score, step)
        self.reported[step] = score
        if self.trial.should_prune():
            self.pruned_epoch = step
            logger.info("trial %s pruned after epoch %d (%s %.4f)", self.trial.number, step, name, score)
            if self.trainer is None:
                raise optuna.TrialPruned(f"pruned after epoch {step} ({name} {score:.4f})")
            self.trainer.terminate()

    def raise_if_pruned(self) -> None:
        import optuna

        if self.pruned:
            raise optuna.TrialPruned(f"pruned after epoch {self.pruned_epoch} "
                                     f"(score {self.reported[self.pruned_epoch]:.4f})")


# ---------------------------------------------------------------------------- study


def make_objective(
    cfg: TuneConfig,
    run_dir: str | os.PathLike,
    bundle_config: str | Sequence[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    quiet: bool = False,
    train_fn: Callable[..., dict] | None = None,
) -> Callable[[Any], float]:
    """The Optuna objective: draw overrides, train into ``run_dir/trial_<n>``, return the best F-beta.

    ``train_fn`` (default :func:`cryo3d.training.run_training`) is called as
    ``train_fn(overrides, config_file=..., evaluator_handlers=[...], trainer_handlers=[...],
    logging_file=...)`` and returns at least ``best`` and ``history``. Each trial records user
    attributes ``overrides`` (the export form), ``output_dir``, ``epochs``, ``best_epoch``,
    ``worker`` (host) and ``pid``.
    """
    from cryo3d.training import run_training

    train_fn = train_fn or run_training
    defaults = dict(defaults) if defaults is not None else bundle_defaults(bundle_config)
    run_dir = Path(run_dir)
    config_file = config_files(bundle_config) if bundle_config is not None else None

    def objective(trial: Any) -> float:
        ov = suggest_overrides(trial, cfg, defaults)
        out = run_dir / f"trial_{trial.number}"
        if out.exists():  # left by a deleted study of the same name: never resume another trial's run
            logger.warning("removing %s left by an earlier study (trials never resume each other)", out)
            shutil.rmtree(out)
        trial.set_user_attr("overrides", ov.export)
        trial.set_user_attr("output_dir", str(out))
        trial.set_user_attr("worker", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())  # with the host: which worker process runs it
        handler = OptunaPruningHandler(trial)
        quieten = [_QuietEngine()] if quiet else []
        res = train_fn({**ov.values, "output_dir": str(out)}, config_file=config_file,
                       evaluator_handlers=[handler, *quieten], trainer_handlers=[handler.trainer_hook, *quieten],
                       logging_file=False if quiet else None)
        hist = res.get("history") or []
        if hist:
            best = max(hist, key=lambda h: h["score"])
            trial.set_user_attr("epochs", int(max(h["epoch"] or 0 for h in hist)))
            trial.set_user_attr("best_epoch", best["epoch"])
        handler.raise_if_pruned()
        score = float(res["best"])
        if not math.isfinite(score):
            raise RuntimeError(f"trial {trial.number}: no validation score in {out} "
                               "(did max_epochs reach val_interval?)")
        return score

    return objective


def make_pruner(kind: str = "median", n_startup_trials: int = 2, n_warmup_steps: int = 2,
                max_epochs: int | None = None) -> Any:
    """``median`` (MedianPruner), ``hyperband`` (HyperbandPruner over epochs) or ``none``.

    ``n_warmup_steps`` is the first epoch at which a trial may be pruned (median), or the
    minimum resource in epochs (hyperband). The first validation of a short run is mostly
    noise (a slow starter often scores 0 there and recovers), hence the default 2.
    """
    import optuna

    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, n_warmup_steps),
                                              max_resource=max_epochs if max_epochs else "auto", reduction_factor=3)
    if kind == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"pruner: expected one of {PRUNERS}, got {kind!r}")


@contextmanager
def _quiet_experimental() -> Iterator[None]:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def default_storage(run_dir: str | os.PathLike) -> str:
    """``sqlite:///<run folder>/study.db`` (absolute path)."""
    return f"sqlite:///{(Path(run_dir) / 'study.db').resolve()}"


def open_storage(url: str, heartbeat_interval: int | None = 30, grace_period: int | None = 120,
                 max_retry: int | None = 2) -> Any:
    """An Optuna ``RDBStorage`` with heartbeats; stale trials are failed and retried ``max_retry`` times."""
    import optuna

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}  # several workers on one file wait, not fail
    if heartbeat_interval:
        kwargs.update(heartbeat_interval=int(heartbeat_interval), grace_period=int(grace_period or 3 * heartbeat_interval))
        with _quiet_experimental():
            if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):  # optuna >= 4.9
                kwargs["heartbeat_stale_trial_callback"] = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
            else:
                kwargs["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(max_retry=max_retry)
            return _rdb_storage(url, kwargs)
    return _rdb_storage(url, kwargs)


def _rdb_storage(url: str, kwargs: Mapping[str, Any]) -> Any:
    """``optuna.storages.RDBStorage``; a missing database driver is one line naming the extra to install."""
    import optuna

    try:
        return optuna.storages.RDBStorage(url, **kwargs)
    except ImportError as e:
        scheme = url.split(":", 1)[0]
        hint = (" (pip install 'cryo3d[postgres]' and use postgresql+psycopg://...)"
                if scheme.startswith("postgres") else "")
        cause = f": {e.__cause__}" if e.__cause__ else ""
        raise ValueError(f"--storage {scheme}://...: no database driver for this URL{cause}{hint}") from None


def retried_trial_number(trial: Any) -> int | None:
    """Number of the killed trial that ``trial`` retries, or None."""
    import optuna

    cb = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    with _quiet_experimental(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return cb.retried_trial_number(trial)


def finished_trials(study: Any) -> int:
    """Completed plus pruned trials: what ``n_trials`` counts."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def prepare_data(bundle_config: Any, overrides: Mapping[str, Any]) -> dict:
    """Evaluate the bundle's ``data`` once (simulate + patch store) before the trials share it.

    A lock file in the dataset folder keeps two workers on one machine (or on a file system
    with POSIX locks) from making the data at the same time.
    """
    from monai.bundle import ConfigParser

    parser = parse_bundle(bundle_config, overrides)
    ddir = Path(parser.get_parsed_content("dataset_dir"))
    ddir.mkdir(parents=True, exist_ok=True)
    with open(ddir / ".cryo3d-tune.lock", "w") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except (ImportError, OSError):  # no POSIX locks here: go on unlocked
            pass
        return parser.get_parsed_content("data")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-2 or abs(v) >= 1e3 else f"{v:.3f}".rstrip("0").rstrip(".")
    return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def trials_table(study: Any) -> str:
    """Text table of every trial: state, best F-beta, epochs run, best epoch, minutes, parameters.

    For a pruned trial the F-beta is the best it reported before it was stopped.
    """
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    names: list[str] = list(dict.fromkeys(p for t in trials for p in t.params))
    header = ["#", "state", "F-beta", "epochs", "best@", "min", *(n.replace("beta_schedule.", "beta.") for n in names)]
    notes = [retried_trial_number(t) for t in trials]
    if any(n is not None for n in notes):
        header.append("note")
    rows = []
    for t, note in zip(trials, notes):
        iv = t.intermediate_values
        score = t.value if t.value is not None and t.state.name == "COMPLETE" else (max(iv.values()) if iv else None)
        epochs = max(iv) if iv else t.user_attrs.get("epochs")
        dur = t.duration.total_seconds() / 60 if t.duration is not None else None
        rows.append([str(t.number), t.state.name, _fmt(score), _fmt(epochs), _fmt(t.user_attrs.get("best_epoch")),
                     "-" if dur is None else f"{dur:.1f}", *(_fmt(t.params.get(n)) for n in names)])
        if len(header) > len(rows[-1]):
            rows[-1].append("" if note is None else f"retry of {note}")
    return _table(header, rows)


def param_importances(study: Any) -> tuple[dict[str, float] | None, str]:
    """Parameter importances of the completed trials, and how they were computed (or why not).

    PED-ANOVA (``optuna.importance.PedAnovaImportanceEvaluator``: which parameters separate the
    top 10 % of trials from the rest; no extra dependency, works with few trials). fANOVA,
    Optuna's default, needs scikit-learn and is used only when PED-ANOVA is missing.
    """
    import optuna
    from optuna.trial import TrialState

    n = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if n < 2:
        return None, f"importances need at least 2 completed trials (have {n})"
    evaluators = []
    if hasattr(optuna.importance, "PedAnovaImportanceEvaluator"):
        evaluators.append(("PED-ANOVA", lambda: optuna.importance.PedAnovaImportanceEvaluator()))
    evaluators.append(("fANOVA", lambda: optuna.importance.FanovaImportanceEvaluator(seed=0)))
    reasons = []
    for label, make in evaluators:
        try:
            with _quiet_experimental():
                warnings.simplefilter("ignore", UserWarning)  # "few trials in a regime": said in the header
                imp = optuna.importance.get_param_importances(study, evaluator=make())
            return dict(imp), f"{label} over {n} completed trials"
        except Exception as e:  # e.g. fANOVA without scikit-learn, or too few distinct values
            reasons.append(f"{label}: {type(e).__name__}: {e}")
    return None, "importances not available (" + "; ".join(reasons) + ")"


def export_best(study: Any, path: str | os.PathLike, fixed: Mapping[str, Any] | None = None,
                storage: str | None = None) -> dict | None:
    """Write the best completed trial's searched keys as a bundle override YAML file.

    The file merges as a second ``--config_file`` after ``train.yaml``: each top-level key
    replaces the bundle's (a mapping like ``beta_schedule`` is written whole, so none of the
    bundle's fields linger). The study's fixed settings are listed in the header as comments.
    Written atomically (several workers may finish trials at once). Returns the overrides, or
    None when no trial has completed.
    """
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    best = study.best_trial
    over = best.user_attrs.get("overrides")
    if over is None:
        raise ValueError(f"trial {best.number} has no 'overrides' user attribute (not run by cryo3d tune?)")
    path = Path(path)
    lines = [
        f"# Best trial of Optuna study {study.study_name!r}"
        + (f" ({storage})" if storage else "") + f": trial {best.number},",
        f"# validation F-beta {best.value:.4f} at epoch {best.user_attrs.get('best_epoch')} "
        f"(run folder {best.user_attrs.get('output_dir')}).",
        "# Train with it:  python -m monai.bundle run training --meta_file bundles/cryo3d_picker/configs/metadata.json \\",
        f"#   --config_file \"['bundles/cryo3d_picker/configs/train.yaml','{path}']\"",
    ]
    if fixed:
        lines.append("# Trials ran with these fixed settings (not applied by this file):")
        lines += [f"#   {k}: {json.dumps(v)}" for k, v in fixed.items()]
    text = "\n".join(lines) + "\n" + yaml.safe_dump(over, sort_keys=False, default_flow_style=None)
    write_text_atomic(path, text)
    return dict(over)


def summary(study: Any, best_path: str | os.PathLike | None = None) -> str:
    """The report ``cryo3d tune`` prints: trials table, best trial, importances."""
    from optuna.trial import TrialState

    counts = {s.name: len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState}
    head = f"study {study.study_name!r}: " + ", ".join(f"{v} {k.lower()}" for k, v in counts.items() if v)
    parts = [head, trials_table(study)]
    if counts["COMPLETE"]:
        b = study.best_trial
        parts.append(f"best: trial {b.number}, F-beta {b.value:.4f} at epoch {b.user_attrs.get('best_epoch')}: "
                     + json.dumps(b.user_attrs.get("overrides")))
        if best_path is not None:
            parts.append(f"best overrides written to {best_path}")
    imp, how = param_importances(study)
    if imp is None:
        parts.append(how)
    else:
        w = max(len(k) for k in imp)
        parts.append(f"parameter importances ({how}):\n" + "\n".join(f"  {k.ljust(w)}  {v:.3f}" for k, v in imp.items()))
    return "\n\n".join(parts)


def run_study(
    config: TuneConfig | str | os.PathLike | None = None,
    *,
    study_name: str = "picker",
    out: str | os.PathLike = "runs/tune",
    storage: str | None = None,
    n_trials: int = 20,
    timeout: float | None = None,
    pruner: str | Any = "median",
    prune_startup_trials: int = 2,
    prune_warmup_epochs: int = 2,
    sampler_startup_trials: int = 5,
    seed: int | None = 0,
    fixed: Mapping[str, Any] | None = None,
    bundle_config: str | Sequence[str] | None = None,
    heartbeat_interval: int | None = 30,
    grace_period: int | None = 120,
    max_retry: int | None = 2,
    quiet: bool = False,
    prepare: bool = True,
    train_fn: Callable[..., dict] | None = None,
    print_fn: Callable[[str], Any] | None = print,
) -> Any:
    """Create or resume a study and run trials until ``n_trials`` have finished; report and export.

    Parameters
    ----------
    config : TuneConfig or path
        Search space and fixed overrides (default: the bundle's ``tune.yaml``).
    study_name, out : str
        The run folder is ``out/study_name``: ``study.db`` (default storage), ``trial_<n>/``
        (each trial's bundle ``output_dir``), ``best_overrides.yaml``, ``summary.txt``.
    storage : str, optional
        Optuna RDB URL; default ``sqlite:///<run folder>/study.db``. A shared
        ``postgresql://...`` lets workers on several machines run one study.
    n_trials : int
        Finished (complete + pruned) trials the study should have in all, counting earlier runs
        and other workers. Failed trials do not count; a killed trial is retried.
    timeout : float, optional
        Stop starting trials after this many seconds.
    pruner : {"median", "hyperband", "none"} or an Optuna pruner
    prune_startup_trials, prune_warmup_epochs : int
        Median pruner: no pruning until this many trials finished, nor before this epoch.
        Hyperband: ``prune_warmup_epochs`` is the minimum resource (epochs).
    sampler_startup_trials, seed : int
        TPE sampler: random trials before TPE, and its seed (give each worker its own seed).
    fixed : dict, optional
        More fixed overrides, on top of the config's ``fixed`` (the command's ``--fixed``).
    bundle_config : path or list of paths, optional
        Training bundle config file(s) (default ``train.yaml``).
    heartbeat_interval, grace_period, max_retry : int
        A running trial writes a heartbeat every ``heartbeat_interval`` s; one silent for
        ``grace_period`` s is failed and retried up to ``max_retry`` times (None: no heartbeat).
    quiet : bool
        Trials log warnings only (Optuna still reports each trial).
    prepare : bool
        Make the data and patch store once before the first trial.
    train_fn : callable, optional
        Replaces :func:`cryo3d.training.run_training` (tests).
    print_fn : callable or None
        Where the summary goes.

    Returns
    -------
    optuna.Study
    """
    import optuna

    cfg = config if isinstance(config, TuneConfig) else TuneConfig.load(config or DEFAULT_TUNE_CONFIG)
    if fixed:
        check_plain_data(dict(fixed), "--fixed")
        cfg = TuneConfig(cfg.space, {**cfg.fixed, **dict(fixed)})
        both = sorted(set(cfg.space) & set(fixed))
        if both:
            raise ValueError(f"--fixed: key(s) {both} are searched in the tune config; remove them from its space")
    check_plain_data(cfg.fixed, "fixed")
    check_plain_data({k: list(s.choices) for k, s in cfg.space.items()}, "space")
    if n_trials < 0:
        raise ValueError(f"n_trials must be >= 0, got {n_trials}")
    defaults = bundle_defaults(bundle_config)
    check_space(cfg, defaults)
    run_dir = Path(out) / study_name
    run_dir.mkdir(parents=True, exist_ok=True)
    url = storage or default_storage(run_dir)
    if quiet:
        import monai.bundle  # noqa: F401  (its loggers exist from here on)

        logging.getLogger().setLevel(logging.WARNING)
        _quiet_loggers()

    if isinstance(pruner, str):
        me = _lookup("max_epochs", {}, _nest(cfg.fixed, defaults), defaults)
        if "max_epochs" in cfg.space:
            me = cfg.space["max_epochs"].high
        pruner = make_pruner(pruner, prune_startup_trials, prune_warmup_epochs, me if isinstance(me, int) else None)
    st = open_storage(url, heartbeat_interval, grace_period, max_retry)
    study = optuna.create_study(storage=st, study_name=study_name, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(), pruner=pruner, load_if_exists=True)
    # A resumed study must not replay the random draws of its first session: offset the seed by the
    # trials already there (a fresh study keeps the given seed, so it is reproducible).
    n_before = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=None if seed is None else seed + n_before,
                                               n_startup_trials=sampler_startup_trials, constant_liar=True)
    spec = cfg.to_dict()
    if "tune_config" not in study.user_attrs:
        study.set_user_attr("tune_config", spec)
    elif study.user_attrs["tune_config"] != json.loads(json.dumps(spec)):
        logger.warning("study %r: the search space or fixed settings changed since the study began", study_name)
    if heartbeat_interval:
        with _quiet_experimental():
            optuna.storages.fail_stale_trials(study)  # a killed worker's trial: FAIL, and queued again

    done = finished_trials(study)
    remaining = n_trials - done
    best_path = run_dir / "best_overrides.yaml"
    if remaining > 0:
        if print_fn is not None:
            print_fn(f"study {study_name!r}: {done} of {n_trials} trials finished; running up to {remaining} more "
                     f"(storage {url})")
        if prepare:
            prepare_data(bundle_config, _nest(cfg.fixed, defaults))
        objective = make_objective(cfg, run_dir, bundle_config, defaults, quiet=quiet, train_fn=train_fn)

        def export_cb(study: Any, trial: Any) -> None:
            export_best(study, best_path, cfg.fixed, url)

        callbacks = [optuna.study.MaxTrialsCallback(n_trials, states=(optuna.trial.TrialState.COMPLETE,
                                                                       optuna.trial.TrialState.PRUNED)), export_cb]
        # a RuntimeError (e.g. out of memory for one setting) fails that trial and the study goes on
        study.optimize(objective, n_trials=remaining, timeout=timeout, callbacks=callbacks, catch=(RuntimeError,))
    elif print_fn is not None:
        print_fn(f"study {study_name!r} already has {done} finished trials (--n-trials {n_trials}): nothing to run")
    export_best(study, best_path, cfg.fixed, url)
    text = summary(study, best_path if best_path.exists() else None)
    write_text_atomic(run_dir / "summary.txt", text + "\n")
    if print_fn is not None:
        print_fn(text)
        print_fn(f"\nrun folder {run_dir}; storage {url}\nbrowse it: optuna-dashboard {url}")
    return study


# ---------------------------------------------------------------------------- command line


def _parse_fixed(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--fixed: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def add_tune_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``cryo3d tune`` (shared by :func:`add_tune_parser` and ``python -m cryo3d.tuning``)."""
    p.add_argument("--config", default=str(DEFAULT_TUNE_CONFIG),
                   help="search space YAML: 'space' (key -> spec) and 'fixed' (key -> value) (default: the bundle's tune.yaml)")
    p.add_argument("--bundle-config", nargs="+", metavar="YAML",
                   help="training bundle config file(s) the trials run (default: the bundle's train.yaml)")
    p.add_argument("--study-name", default="picker", help="study name; the run folder is OUT/STUDY (default: %(default)s)")
    p.add_argument("--out", default="runs/tune", help="parent of the run folder (default: %(default)s)")
    p.add_argument("--storage", help="Optuna RDB URL (default: sqlite:///OUT/STUDY/study.db); a shared "
                   "postgresql://user:password@host/db lets workers on several machines run one study")
    p.add_argument("--n-trials", type=int, default=20,
                   help="finished (complete + pruned) trials the study should have in all, earlier runs and other "
                   "workers included (default: %(default)s)")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--pruner", default="median", choices=PRUNERS, help="pruner of bad trials (default: %(default)s)")
    p.add_argument("--prune-startup-trials", type=int, default=2,
                   help="median pruner: prune nothing until this many trials finished (default: %(default)s)")
    p.add_argument("--prune-warmup-epochs", type=int, default=2,
                   help="prune no trial before this epoch (hyperband: minimum epochs) (default: %(default)s)")
    p.add_argument("--sampler-startup-trials", type=int, default=5,
                   help="random trials before TPE takes over (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="TPE sampler seed; give each worker its own (default: %(default)s)")
    p.add_argument("--fixed", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="more overrides for every trial (YAML values), e.g. --fixed max_epochs=4 dataset_dir=data/mine")
    p.add_argument("--heartbeat-interval", type=int, default=30,
                   help="seconds between a running trial's heartbeats (0: none) (default: %(default)s)")
    p.add_argument("--grace-period", type=int, default=120,
                   help="a trial silent this long (seconds) was killed: it is failed and retried (default: %(default)s)")
    p.add_argument("--max-retry", type=int, default=2, help="retries of a killed trial (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="trials log warnings only")
    return p


def add_tune_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tune`` on an ``argparse`` sub-parser set (``cryo3d`` wires it into its CLI)."""
    s = subparsers.add_parser(
        "tune", help="tune training hyperparameters with Optuna (pruning, resumable, several workers)",
        description="Optuna study over the training bundle: each trial trains with overrides drawn from the "
        "search space into OUT/STUDY/trial_<n> and scores its best validation F-beta; bad trials are pruned on "
        "per-epoch scores. Run it again to resume (killed trials are retried); the best trial is exported as "
        "OUT/STUDY/best_overrides.yaml, a bundle config file.")
    add_tune_arguments(s)
    s.set_defaults(func=cmd_tune)
    return s


def cmd_tune(a: argparse.Namespace) -> int:
    """Run ``cryo3d tune`` with parsed arguments."""
    run_study(
        a.config, study_name=a.study_name, out=a.out, storage=a.storage, n_trials=a.n_trials, timeout=a.timeout,
        pruner=a.pruner, prune_startup_trials=a.prune_startup_trials, prune_warmup_epochs=a.prune_warmup_epochs,
        sampler_startup_trials=a.sampler_startup_trials, seed=a.seed, fixed=_parse_fixed(a.fixed),
        bundle_config=a.bundle_config, heartbeat_interval=a.heartbeat_interval or None,
        grace_period=a.grace_period, max_retry=a.max_retry, quiet=a.quiet,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cryo3d.tuning [options]``: the same as ``cryo3d tune``."""
    p = add_tune_arguments(argparse.ArgumentParser(prog="python -m cryo3d.tuning", description=cmd_tune.__doc__))
    a = p.parse_args(argv)
    try:
        return cmd_tune(a)
    except (ValueError, FileNotFoundError) as e:
        print(f"cryo3d tune: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
