"""Killing a copick write leaves every pick set old or new and readable (issue 20, finding 8).

A child process rewrites the project's picks of ``cryo3d``/``9`` with ``--overwrite`` in a
loop, alternating two pick sets, through the very function ``cryo3d predict --copick-config
--overwrite`` writes with (:func:`cryo3d.commands.copick_inputs.write_predictions`); it is
SIGKILLed at 20 random moments. After each kill every pick file is set A or set B, whole.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from argparse import Namespace
from pathlib import Path

import numpy as np

from cryo3d.commands.copick_inputs import write_predictions
from cryo3d.io.copick_files import load_copick_file
from cryo3d.picks import Picks

N_KILLS = 20
USER, SESSION = "cryo3d", "9"


def _sets(runs: list[str]) -> tuple[Picks, Picks]:
    """Two pick sets over the runs: A with 2000 apo-ferritin picks per run, B with 3000 (large, so a kill
    often lands inside a file's write)."""
    def make(n: int, x0: float) -> Picks:
        rows = [(r, "apo-ferritin", x0 + 0.01 * i) for r in runs for i in range(n)]
        xyz = np.array([[x, 100.0, 100.0] for _, _, x in rows])
        return Picks(tomo=np.array([r for r, _, _ in rows]), cls=np.array([c for _, c, _ in rows]), xyz=xyz,
                     score=np.full(len(rows), 0.5))
    return make(2000, 100.0), make(3000, 300.0)


CHILD = textwrap.dedent("""
    import sys
    from argparse import Namespace
    import numpy as np
    from cryo3d.commands.copick_inputs import write_predictions
    from cryo3d.picks import Picks
    config, runs = sys.argv[1], sys.argv[2].split(",")
    def make(n, x0):
        rows = [(r, x0 + 0.01 * i) for r in runs for i in range(n)]
        return Picks(tomo=np.array([r for r, _ in rows]), cls=np.array(["apo-ferritin"] * len(rows)),
                     xyz=np.array([[x, 100.0, 100.0] for _, x in rows]), score=np.full(len(rows), 0.5))
    sets = [make(3000, 300.0), make(2000, 100.0)]
    a = Namespace(copick_config=config, user_id="cryo3d", session_id="9", overwrite=True)
    print("ready", flush=True)
    i = 0
    while True:
        write_predictions(a, sets[i % 2], runs)
        i += 1
""")


def test_twenty_kills_during_an_overwrite_leave_every_pick_set_old_or_new_and_readable(copick_project, tmp_path):
    config, _ = copick_project
    overlay = Path(str(config)).parent / "overlay"
    runs = sorted(p.name for p in (overlay / "ExperimentRuns").iterdir())
    a_set, b_set = _sets(runs)
    write_predictions(Namespace(copick_config=str(config), user_id=USER, session_id=SESSION, overwrite=True),
                      a_set, [f"{r}" for r in runs])
    rng = random.Random(20)
    want = {len(a_set.for_tomo(runs[0]).for_class("apo-ferritin")),
            len(b_set.for_tomo(runs[0]).for_class("apo-ferritin"))}
    t0 = time.monotonic()
    for _ in range(N_KILLS):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(config), ",".join(runs)],
                                 stdout=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.0, 1.0))
        child.send_signal(signal.SIGKILL)
        child.wait()
        files = sorted(overlay.glob(f"ExperimentRuns/*/Picks/{USER}_{SESSION}_*.json"))
        assert files, "the pick sets are gone"
        for f in files:
            meta, picks = load_copick_file(f)  # readable: whole JSON, copick's model accepts it
            n = len(picks)
            if meta["pickable_object_name"] == "apo-ferritin":
                assert n in want, f"{f}: {n} points, neither the old nor the new set"
            else:
                assert n == 0, f"{f}: {n} points in a class neither set has"
        assert not list(overlay.glob("ExperimentRuns/*/Picks/.*.json")), "a temporary copick would list as picks"
    assert time.monotonic() - t0 < 120


def test_a_write_that_dies_midway_leaves_the_old_pick_set_whole(copick_project, monkeypatch):
    """copick's own writer truncates then dumps; dying inside the dump must not cost the old file."""
    import json

    config, _ = copick_project
    overlay = Path(str(config)).parent / "overlay"
    runs = sorted(p.name for p in (overlay / "ExperimentRuns").iterdir())
    a_set, b_set = _sets(runs)
    args = Namespace(copick_config=str(config), user_id=USER, session_id="8", overwrite=True)
    write_predictions(args, a_set, runs)
    f = overlay / "ExperimentRuns" / runs[0] / "Picks" / f"{USER}_8_apo-ferritin.json"
    before = f.read_bytes()

    def dies(obj, fp, *a, **k):  # half a document, then the process "dies"
        fp.write('{"points": [')
        raise KeyboardInterrupt

    monkeypatch.setattr(json, "dump", dies)
    try:
        write_predictions(args, b_set, runs)
    except KeyboardInterrupt:
        pass
    monkeypatch.undo()
    assert f.read_bytes() == before or len(load_copick_file(f)[1]) == 3000 * 1
