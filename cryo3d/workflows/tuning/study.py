"""Running a study: the objective (one trial = one training run), shared data, the trial loop."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import monai.bundle  # noqa: F401  (its loggers exist before _quiet_loggers quietens them)
import optuna

from cryo3d.io.atomic import write_text_atomic
from cryo3d.workflows.run import run_training
from cryo3d.workflows.bundle import config_files, parse_bundle
from cryo3d.workflows.tuning.pruning import OptunaPruningHandler, make_pruner
from cryo3d.workflows.tuning.report import export_best, summary
from cryo3d.workflows.tuning.sampling import check_space, nest_overrides, suggest_overrides, trial_value
from cryo3d.workflows.tuning.space import DEFAULT_TUNE_CONFIG, TuneConfig, bundle_defaults, check_plain_data
from cryo3d.workflows.tuning.storage import default_storage, fail_stale_trials, finished_trials, open_storage

try:
    import fcntl
except ImportError:  # not POSIX: workers preparing the data are not locked out of each other
    fcntl = None

logger = logging.getLogger(__name__)


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


def make_objective(
    cfg: TuneConfig,
    run_dir: str | os.PathLike,
    bundle_config: str | Sequence[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    quiet: bool = False,
    train_fn: Callable[..., dict] | None = None,
) -> Callable[[Any], float]:
    """The Optuna objective: draw overrides, train into ``run_dir/trial_<n>``, return the best F-beta.

    ``train_fn`` (default :func:`cryo3d.workflows.run.run_training`) is called as
    ``train_fn(overrides, config_file=..., evaluator_handlers=[...], trainer_handlers=[...],
    logging_file=...)`` and returns at least ``best`` and ``history``. Each trial records user
    attributes ``overrides`` (the export form), ``output_dir``, ``epochs``, ``best_epoch``,
    ``worker`` (host) and ``pid``.
    """
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


def prepare_data(bundle_config: Any, overrides: Mapping[str, Any]) -> dict:
    """Evaluate the bundle's ``data`` once (simulate + patch store) before the trials share it.

    A lock file in the dataset folder keeps two workers on one machine (or on a file system
    with POSIX locks) from making the data at the same time.
    """
    parser = parse_bundle(bundle_config, overrides)
    ddir = Path(parser.get_parsed_content("dataset_dir"))
    ddir.mkdir(parents=True, exist_ok=True)
    with open(ddir / ".cryo3d-tune.lock", "w") as fh:
        if fcntl is not None:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX)
            except OSError:  # no POSIX locks on this file system: go on unlocked
                pass
        return parser.get_parsed_content("data")


def _with_fixed(cfg: TuneConfig, fixed: Mapping[str, Any] | None) -> TuneConfig:
    """The config with ``--fixed`` on top of its ``fixed``; every value checked as plain data."""
    if fixed:
        check_plain_data(dict(fixed), "--fixed")
        cfg = TuneConfig(cfg.space, {**cfg.fixed, **dict(fixed)})
        both = sorted(set(cfg.space) & set(fixed))
        if both:
            raise ValueError(f"--fixed: key(s) {both} are searched in the tune config; remove them from its space")
    check_plain_data(cfg.fixed, "fixed")
    check_plain_data({k: list(s.choices) for k, s in cfg.space.items()}, "space")
    return cfg


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

    Args:
        config: Search space and fixed overrides, a :class:`TuneConfig` or a path (default:
            the bundle's ``tune.yaml``).
        study_name: The study's name; the run folder is ``out/study_name``: ``study.db``
            (default storage), ``trial_<n>/`` (each trial's bundle ``output_dir``),
            ``best_overrides.yaml``, ``summary.txt``.
        out: Parent of the run folder.
        storage: Optuna RDB URL; default ``sqlite:///<run folder>/study.db``. A shared
            ``postgresql://...`` lets workers on several machines run one study.
        n_trials: Finished (complete + pruned) trials the study should have in all, counting
            earlier runs and other workers. Failed trials do not count; a killed trial is
            retried.
        timeout: Stop starting trials after this many seconds.
        pruner: ``"median"``, ``"hyperband"``, ``"none"`` or an Optuna pruner.
        prune_startup_trials: Median pruner: no pruning until this many trials finished.
        prune_warmup_epochs: Median pruner: no pruning before this epoch. Hyperband: the
            minimum resource (epochs).
        sampler_startup_trials: TPE sampler: random trials before TPE.
        seed: TPE sampler's seed (give each worker its own).
        fixed: More fixed overrides, on top of the config's ``fixed`` (the command's
            ``--fixed``).
        bundle_config: Training bundle config file(s) (default ``train.yaml``).
        heartbeat_interval: A running trial writes a heartbeat every ``heartbeat_interval`` s
            (None: no heartbeat).
        grace_period: A trial silent for ``grace_period`` s is failed and retried.
        max_retry: Retries of a killed trial.
        quiet: Trials log warnings only (Optuna still reports each trial).
        prepare: Make the data and patch store once before the first trial.
        train_fn: Replaces :func:`cryo3d.workflows.run.run_training` (tests).
        print_fn: Where the summary goes (None: nowhere).

    Returns:
        The ``optuna.Study``.
    """
    cfg = config if isinstance(config, TuneConfig) else TuneConfig.load(config or DEFAULT_TUNE_CONFIG)
    cfg = _with_fixed(cfg, fixed)
    if n_trials < 0:
        raise ValueError(f"n_trials must be >= 0, got {n_trials}")
    defaults = bundle_defaults(bundle_config)
    check_space(cfg, defaults)
    run_dir = Path(out) / study_name
    run_dir.mkdir(parents=True, exist_ok=True)
    url = storage or default_storage(run_dir)
    if quiet:
        logging.getLogger().setLevel(logging.WARNING)
        _quiet_loggers()

    if isinstance(pruner, str):
        me = trial_value("max_epochs", {}, nest_overrides(cfg.fixed, defaults), defaults)
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
        fail_stale_trials(study)  # a killed worker's trial: FAIL, and queued again

    done = finished_trials(study)
    remaining = n_trials - done
    best_path = run_dir / "best_overrides.yaml"
    if remaining > 0:
        if print_fn is not None:
            print_fn(f"study {study_name!r}: {done} of {n_trials} trials finished; running up to {remaining} more "
                     f"(storage {url})")
        if prepare:
            prepare_data(bundle_config, nest_overrides(cfg.fixed, defaults))
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
