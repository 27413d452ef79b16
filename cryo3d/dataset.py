"""MONAI datasets over the patch store.

:class:`PatchDataset` yields the transform dictionary of ``ARCHITECTURE.md`` for each
patch (``image``, ``keypoints``, ``labels`` and meta), then applies a MONAI transform
(e.g. ``cryo3d_transforms.default_train_transforms``). It is a ``monai.data.Dataset``, so it
works with ``monai.data.DataLoader``, bundles and ``SupervisedTrainer``.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np
from monai.data import Dataset
from monai.transforms import apply_transform

from cryo3d.store import PatchStore


class PatchDataset(Dataset):
    """Patches of a :class:`~cryo3d.store.PatchStore` as transform dictionaries.

    Args:
        store: a ``PatchStore`` or the path of a store folder.
        tomograms: only patches of these tomograms (e.g. the training fold); default all.
        indices: explicit patch indices (overrides ``tomograms``).
        transform: a callable (MONAI ``Compose``) applied to each dictionary.
        per_keypoint_meta: keep the store's ``global_coords`` and ``local_ds_coords``. Off by
            default: spatial transforms move ``keypoints`` only, so these would go stale, and
            their ragged shapes do not collate.

    Example:
        >>> ds = PatchDataset("data/store", tomograms=["synth_000"])  # doctest: +SKIP
        >>> ds[0]["image"].shape                                       # doctest: +SKIP
        (1, 64, 64, 64)
    """

    def __init__(
        self,
        store: PatchStore | str | os.PathLike,
        tomograms: Sequence[str] | None = None,
        indices: Sequence[int] | None = None,
        transform: Callable | None = None,
        per_keypoint_meta: bool = False,
    ) -> None:
        self.per_keypoint_meta = per_keypoint_meta
        self.store = store if isinstance(store, PatchStore) else PatchStore(store)
        if indices is None:
            indices = (
                self.store.indices_for(tomograms) if tomograms is not None else np.arange(len(self.store))
            )
        super().__init__(data=[int(i) for i in indices], transform=transform)

    def _transform(self, index: int):
        rec = self.store.record(self.data[index])
        if not self.per_keypoint_meta:
            rec.pop("global_coords")
            rec.pop("local_ds_coords")
        return apply_transform(self.transform, rec) if self.transform is not None else rec


def split_tomograms(names: Sequence[str], n_val: int = 1, val: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """Split tomogram names into (train, validation), by tomogram, never by patch.

    ``val`` names the validation tomograms explicitly; otherwise the last ``n_val`` (sorted)
    are held out. Raises if a split would leave either side empty.
    """
    names = sorted(names)
    if val is None:
        if not 0 < n_val < len(names):
            raise ValueError(f"cannot hold out {n_val} of {len(names)} tomograms; need at least one on each side")
        val = names[-n_val:]
    missing = sorted(set(val) - set(names))
    if missing:
        raise ValueError(f"validation tomograms {missing} are not among {names}")
    train = [n for n in names if n not in set(val)]
    if not train:
        raise ValueError("no training tomograms left after holding out the validation ones")
    return train, list(val)
