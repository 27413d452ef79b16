"""The in-memory picks table: what every reader returns and every writer takes.

One row per particle: tomogram name, class name, ``(x, y, z)`` in Angstrom, score.
Ground truth and predictions share this type (and the CSV ``tomo,class,x,y,z[,score,...]``),
so the metric compares two :class:`Picks`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np


@dataclass
class Picks:
    """A table of particle picks.

    Attributes:
        tomo (str array ``[N]``): Tomogram name (file stem or copick run name).
        cls (str array ``[N]``): Particle class name.
        xyz (float64 array ``[N, 3]``): Centre ``(x, y, z)`` in Angstrom.
        score (float64 array ``[N]``): Confidence (1.0 for ground truth).
        extra (dict of str -> array ``[N]``): Further columns read from or written to files.
    """

    tomo: np.ndarray
    cls: np.ndarray
    xyz: np.ndarray
    score: np.ndarray = None  # type: ignore[assignment]
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tomo = np.asarray(self.tomo, dtype=object).reshape(-1)
        self.cls = np.asarray(self.cls, dtype=object).reshape(-1)
        self.xyz = np.asarray(self.xyz, dtype=np.float64).reshape(-1, 3)
        n = self.xyz.shape[0]
        if self.score is None:
            self.score = np.ones(n, dtype=np.float64)
        self.score = np.asarray(self.score, dtype=np.float64).reshape(-1)
        for name, col in [("tomo", self.tomo), ("class", self.cls), ("score", self.score)]:
            if col.shape[0] != n:
                raise ValueError(f"picks column {name!r} has {col.shape[0]} rows, expected {n}")
        self.extra = {k: np.asarray(v).reshape(-1) for k, v in self.extra.items()}
        for k, v in self.extra.items():
            if v.shape[0] != n:
                raise ValueError(f"picks column {k!r} has {v.shape[0]} rows, expected {n}")

    def __len__(self) -> int:
        return self.xyz.shape[0]

    @classmethod
    def empty(cls) -> "Picks":
        return cls(np.empty(0, object), np.empty(0, object), np.empty((0, 3)))

    def select(self, mask_or_index) -> "Picks":
        """Rows selected by a boolean mask or an index array."""
        m = np.asarray(mask_or_index)
        return Picks(
            self.tomo[m], self.cls[m], self.xyz[m], self.score[m],
            {k: v[m] for k, v in self.extra.items()},
        )

    def for_tomo(self, name: str) -> "Picks":
        return self.select(self.tomo == name)

    def for_class(self, name: str) -> "Picks":
        return self.select(self.cls == name)

    @property
    def tomograms(self) -> list[str]:
        """Tomogram names in order of first appearance."""
        return list(dict.fromkeys(self.tomo.tolist()))

    @property
    def classes(self) -> list[str]:
        return list(dict.fromkeys(self.cls.tolist()))

    @staticmethod
    def concat(parts: Iterable["Picks"]) -> "Picks":
        parts = [p for p in parts if p is not None]
        if not parts:
            return Picks.empty()
        keys = set(parts[0].extra)
        for p in parts[1:]:
            keys &= set(p.extra)
        return Picks(
            np.concatenate([p.tomo for p in parts]),
            np.concatenate([p.cls for p in parts]),
            np.concatenate([p.xyz for p in parts]),
            np.concatenate([p.score for p in parts]),
            {k: np.concatenate([p.extra[k] for p in parts]) for k in sorted(keys)},
        )
