"""Where a study lives: Optuna RDB storage (SQLite or PostgreSQL), heartbeats, retried trials.

Every running trial writes a heartbeat to the storage; a trial silent for ``grace_period``
seconds was killed: it is failed and re-queued with the same parameters, up to ``max_retry``
times. The database drivers (psycopg, sqlalchemy's dialects) are imported by Optuna only when
a URL needs them.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import optuna
from optuna.trial import TrialState


@contextmanager
def quiet_experimental() -> Iterator[None]:
    """Silence Optuna's ``ExperimentalWarning`` (heartbeats, retries, PED-ANOVA) inside the block."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def default_storage(run_dir: str | os.PathLike) -> str:
    """``sqlite:///<run folder>/study.db`` (absolute path)."""
    return f"sqlite:///{(Path(run_dir) / 'study.db').resolve()}"


def open_storage(url: str, heartbeat_interval: int | None = 30, grace_period: int | None = 120,
                 max_retry: int | None = 2) -> Any:
    """An Optuna ``RDBStorage`` with heartbeats; stale trials are failed and retried ``max_retry`` times.

    Args:
        url: Optuna RDB URL (``sqlite:///...``, ``postgresql+psycopg://...``).
        heartbeat_interval: Seconds between a running trial's heartbeats (None or 0: none).
        grace_period: Seconds of silence after which a trial counts as killed (default three
            heartbeats).
        max_retry: Retries of a killed trial.

    Raises:
        ValueError: When no database driver is installed for the URL.
    """
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}  # several workers on one file wait, not fail
    if heartbeat_interval:
        kwargs.update(heartbeat_interval=int(heartbeat_interval), grace_period=int(grace_period or 3 * heartbeat_interval))
        with quiet_experimental():
            if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):  # optuna >= 4.9
                kwargs["heartbeat_stale_trial_callback"] = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
            else:
                kwargs["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(max_retry=max_retry)
            return _rdb_storage(url, kwargs)
    return _rdb_storage(url, kwargs)


def _rdb_storage(url: str, kwargs: Mapping[str, Any]) -> Any:
    """``optuna.storages.RDBStorage``; a missing database driver is one line naming the extra to install."""
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
    cb = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    with quiet_experimental(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return cb.retried_trial_number(trial)


def fail_stale_trials(study: Any) -> None:
    """Fail the trials of killed workers (heartbeat older than the grace period); they are queued again."""
    with quiet_experimental():
        optuna.storages.fail_stale_trials(study)


def finished_trials(study: Any) -> int:
    """Completed plus pruned trials: what ``n_trials`` counts."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
