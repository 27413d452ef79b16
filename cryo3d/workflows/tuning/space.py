"""The search space of a study: :class:`ParamSpec`, :class:`TuneConfig` (``tune.yaml``).

One bundle key per entry (dotted keys ``beta_schedule.start`` for one field of a
mapping-valued key) and the ``fixed`` overrides every trial shares. Both are plain data:
:func:`check_plain_data` refuses anything MONAI's config parser would run (``$`` expressions,
``%`` macros, ``_target_`` mappings).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from cryo3d.errors import Cryo3DError
from cryo3d.workflows.bundle import ConfigFiles, config_path, raw_bundle_keys

#: Pruners a study can use (``cryo3d tune --pruner``; :func:`~cryo3d.workflows.tuning.pruning.make_pruner`).
PRUNERS = ("median", "hyperband", "none")

#: The default search space.
DEFAULT_TUNE_CONFIG = config_path("tune.yaml")
#: The training bundle the trials run.
DEFAULT_BUNDLE_CONFIG = config_path("train.yaml")

SPEC_TYPES = ("float", "int", "categorical")
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
#: MONAI config keys that instantiate or run code (``_target_``) or steer it.
_MONAI_SPECIAL_KEYS = ("_target_", "_path_", "_requires_", "_disabled_", "_mode_", "_desc_")


def _number(value: Any, where: str) -> float:
    """A YAML number, accepting ``1e-4`` (which YAML 1.1 reads as a string)."""
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a number, got {value!r}") from None


def split_key(key: str) -> tuple[str, str | None]:
    """``"beta_schedule.start"`` -> ``("beta_schedule", "start")``; ``"lr"`` -> ``("lr", None)``."""
    head, _, sub = key.partition(".")
    return head, (sub or None)


@dataclass(frozen=True)
class ParamSpec:
    """One searched bundle key.

    Attributes:
        name: Bundle key (``learning_rate``) or ``key.field`` of a mapping-valued key
            (``beta_schedule.start``); also the Optuna parameter name.
        type: One of ``"float"``, ``"int"``, ``"categorical"``.
        low: Inclusive lower end of the range (``float`` / ``int``).
        high: Inclusive upper end of the range (``float`` / ``int``).
        log: Sample on a log scale (``low > 0``).
        step: Optional grid step (not with ``log``).
        choices: Values of a ``categorical`` (None, bool, int, float or str).
        when: Extra conditions ``{other key: allowed values}``: the parameter is drawn only when
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
        """The extreme values (``low``, ``high``) or every choice: what ``check_space`` tries."""
        if self.type == "categorical":
            return list(self.choices)
        return [self.low] if self.low == self.high else [self.low, self.high]


@dataclass
class TuneConfig:
    """A search space and the overrides every trial shares.

    Attributes:
        space: Bundle keys (or ``key.field``) -> :class:`ParamSpec`, in drawing order.
        fixed: Bundle keys (or ``key.field``) -> values.
    """

    space: dict[str, ParamSpec]
    fixed: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "tune config") -> "TuneConfig":
        """Check and build a config from its YAML mapping (``space:`` and ``fixed:``).

        Args:
            d: The mapping read from a tune YAML file.
            source: Where it came from, for error messages.

        Raises:
            ValueError: On an unknown key, an empty space, a bad spec, or a key both searched
                and fixed.
            Cryo3DError: On a value the bundle would run as code (:func:`check_plain_data`).
        """
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
        """The YAML mapping of this config."""
        return {"space": {k: s.to_dict() for k, s in self.space.items()}, "fixed": copy.deepcopy(self.fixed)}


def bundle_defaults(bundle_config: ConfigFiles = None) -> dict:
    """The raw (unevaluated) top-level keys of the bundle config file(s), later files winning."""
    return raw_bundle_keys(bundle_config)


def check_keys(cfg: TuneConfig, defaults: Mapping[str, Any]) -> None:
    """Every key names a bundle key (a mapping one for ``key.field``); ``cryo3d tune`` owns ``output_dir``."""
    for where, keys in (("space", cfg.space), ("fixed", cfg.fixed)):
        for key in keys:
            head, sub = split_key(key)
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
            if split_key(other)[0] not in defaults:
                raise ValueError(f"space.{name}.when: {other!r} is not a key of the training bundle")


def check_plain_data(value: Any, where: str) -> None:
    """Refuse values that MONAI's config parser would run: the search space and ``fixed`` are data.

    A bundle config evaluates strings starting with ``$`` (Python expressions), reads ``%``
    macros (other config files, themselves code) and instantiates mappings with a
    ``_target_``. Overrides from ``tune.yaml`` and ``--fixed`` come from files and command
    lines a user may be handed, so they must stay plain values: such a string or mapping
    is refused, never passed on. ``@key`` references to other bundle keys stay allowed (they
    run nothing).

    Args:
        value: A value, list or mapping (checked recursively).
        where: Its name in error messages (``fixed``, ``--fixed``, ``space``).

    Raises:
        Cryo3DError: Naming the first string or key the bundle would run.
    """
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
