"""The patch store: tomograms cut into overlapping subvolumes with their keypoints.

Layout of a store folder (everything memory-mappable, no file per keypoint or patch):

``images.npy``
    float32 ``[P, Z, Y, X]``, normalised patches (see :func:`cryo3d.normalization.robust_stats`).
``origins.npy``
    int64 ``[P, 3]``, patch corner in tomogram voxels ``[z, y, x]``.
``patch_tomo.npy``
    int64 ``[P]``, index into the manifest's tomogram list.
``kp_offsets.npy``
    int64 ``[P + 1]``; patch ``i`` owns keypoint rows ``kp_offsets[i]:kp_offsets[i+1]``.
``keypoints.npz``
    one table of keypoint rows: ``class_id [M]``, ``global_coords [M, 3]`` (Angstrom,
    ``x, y, z``), ``local_rs_coords [M, 3]`` (float full-resolution patch voxels, ``z, y, x``),
    ``local_ds_coords [M, 3]`` (float downsampled patch voxels, ``z, y, x``).
``heatmaps.npy`` (optional, the cheap path)
    float32 ``[P, C, z, y, x]`` precomputed downsampled heatmaps.
``manifest.json``
    every setting: patch size, stride, ``ds_factor``, per-class ``angstrom_sigma`` and
    ``ds_sigma``, ``voxel_spacing``, particle set, normalisation and its per-tomogram
    statistics, tomogram names and shapes, a fingerprint of the inputs.

Keypoints outside a patch but within ``coords.KEYPOINT_MARGIN_SIGMAS`` (3) sigma of its border are kept,
so that a shift or rotation brings them in correctly. The same inputs give the same store
(no randomness), and the folder is written to a temporary sibling and renamed at the end,
so an interrupted ``prepare`` never leaves a half store behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from cryo3d import coords
from cryo3d.errors import Cryo3DError
from cryo3d.heatmap import render_heatmap
from cryo3d.io.output_guard import hold_temp, remove_stale_temps
from cryo3d.io.pick_validation import validate_picks
from cryo3d.normalization import NORM_CLIP, normalize, robust_stats
from cryo3d.particles import ParticleSet
from cryo3d.picks import Picks
from cryo3d.resample import to_spacing

STORE_VERSION = 1
def patch_starts(n: int, size: int, stride: int) -> np.ndarray:
    """Patch corners along one axis covering ``[0, n)``; the last patch ends at ``n``.

    If ``n < size`` a single patch at 0 is returned (it is padded when cut).
    """
    if size <= 0 or stride <= 0:
        raise ValueError(f"patch size and stride must be positive, got {size} and {stride}")
    if n <= size:
        return np.array([0], dtype=np.int64)
    starts = list(range(0, n - size + 1, stride))
    if starts[-1] != n - size:
        starts.append(n - size)
    return np.asarray(starts, dtype=np.int64)


def cut_patch(vol: np.ndarray, origin: Sequence[int], size: Sequence[int], fill: float = 0.0) -> np.ndarray:
    """``vol[origin : origin + size]`` padded with ``fill`` where it leaves the volume."""
    out = np.full(tuple(size), fill, dtype=np.float32)
    src = tuple(slice(max(0, o), min(n, o + s)) for o, s, n in zip(origin, size, vol.shape))
    dst = tuple(slice(sl.start - o, sl.stop - o) for sl, o in zip(src, origin))
    out[dst] = vol[src]
    return out


@dataclass
class StoreSettings:
    """Settings of ``prepare`` (all recorded in the manifest).

    Attributes:
        patch_size: (Z, Y, X) voxels, each divisible by ``ds_factor``.
        stride: (Z, Y, X) voxels between patch corners.
        ds_factor: heatmap downsampling factor.
        precompute_heatmaps: also store the downsampled heatmaps (cheap path).
        normalization: ``"robust_zscore"`` (median / 1.4826 MAD per tomogram, clipped at
            +/- ``NORM_CLIP``) or ``"none"``.
        voxel_spacing: resample every tomogram to this many Angstrom per voxel first (e.g. 20 to
            train at bin 2, or to bring tomograms of different spacings together); None keeps
            the tomograms' own spacing, which must then be the same for all.
    """

    patch_size: tuple[int, int, int] = (64, 64, 64)
    stride: tuple[int, int, int] = (48, 48, 48)
    ds_factor: int = 2
    precompute_heatmaps: bool = False
    normalization: str = "robust_zscore"
    voxel_spacing: float | None = None

    def __post_init__(self) -> None:
        self.patch_size = _triple(self.patch_size, "patch_size")
        self.stride = _triple(self.stride, "stride")
        if any(p % self.ds_factor for p in self.patch_size):
            raise ValueError(f"patch_size {self.patch_size} must be divisible by ds_factor {self.ds_factor}")
        if self.normalization not in ("robust_zscore", "none"):
            raise ValueError(f"normalization must be 'robust_zscore' or 'none', got {self.normalization!r}")


def _triple(v, name: str) -> tuple[int, int, int]:
    t = (int(v),) * 3 if np.isscalar(v) else tuple(int(x) for x in v)
    if len(t) != 3 or min(t) <= 0:
        raise ValueError(f"{name} must be a positive int or three of them (z, y, x), got {v!r}")
    return t  # type: ignore[return-value]


def prepare_store(
    tomograms: Sequence,
    picks: Picks,
    particles: ParticleSet,
    out_dir: str | os.PathLike,
    settings: StoreSettings | None = None,
    overwrite: bool = False,
    progress: bool = True,
    source: str = "picks",
) -> dict:
    """Cut tomograms into patches and write the store (see the module docstring).

    ``source`` names the picks (their file) in validation errors and warnings.

    Args:
        tomograms (list of :class:`cryo3d.io.tomogram.Tomogram`):
            Loaded (memory-mapped) tomograms; their names key the picks.
        picks (Picks): Ground truth in Angstrom for these tomograms (validated against their shapes).
        particles (ParticleSet): Classes; class ids in the store follow its order.
        out_dir (path): Store folder (created; an existing complete store with the same fingerprint is
            reused unless ``overwrite``).

    Returns:
        dict: The manifest.
    """
    settings = settings or StoreSettings()
    out = Path(out_dir)
    check_store_target(out)
    if not tomograms:
        raise ValueError("prepare: no tomograms given")
    names = [t.name for t in tomograms]
    if len(set(names)) != len(names):
        raise ValueError(f"prepare: tomogram names must be unique, got {names}")
    spacings = {t.name: float(t.voxel_spacing) for t in tomograms}
    if settings.voxel_spacing is None and len(set(spacings.values())) != 1:
        raise ValueError(
            f"prepare: all tomograms of a store must share one voxel spacing, got {spacings}; "
            "resample them first"
        )
    spacing = coords.check_voxel_spacing(
        settings.voxel_spacing if settings.voxel_spacing is not None else next(iter(spacings.values())),
        "voxel_spacing",
    )
    known = set(names)
    extra = sorted(set(picks.tomo.tolist()) - known)
    if extra:
        raise ValueError(f"prepare: picks name tomograms that were not given: {extra[:5]} (given: {names[:5]})")
    picks = picks.select(np.isin(picks.tomo, names))
    validate_picks(picks, particles, shapes={t.name: t.shape for t in tomograms},
                   voxel_spacings=spacings, source=source, tomogram_files={t.name: t.path for t in tomograms})
    if settings.voxel_spacing is not None:
        tomograms = [_Resampled(t, spacing) for t in tomograms]

    fp = _fingerprint(tomograms, picks, particles, settings)
    man_path = out / "manifest.json"
    if man_path.exists() and not overwrite:
        man = json.loads(man_path.read_text())
        if man.get("fingerprint") == fp:
            return man
        raise ValueError(f"{out}: a store made from other inputs or settings is there; use --overwrite or another folder")

    f = settings.ds_factor
    a_sigma = particles.angstrom_sigmas
    d_sigma = coords.ds_sigma(a_sigma, spacing, f)
    rs_sigma = coords.length_to_voxels(a_sigma, spacing)
    cls_ids_all = particles.indices(picks.cls, where="picks class")
    psz = np.asarray(settings.patch_size)

    # plan: every patch origin of every tomogram
    plan = []
    for ti, t in enumerate(tomograms):
        grids = [patch_starts(n, s, st) for n, s, st in zip(t.shape, settings.patch_size, settings.stride)]
        og = np.stack(np.meshgrid(*grids, indexing="ij"), -1).reshape(-1, 3)
        plan += [(ti, o) for o in og]

    remove_stale_temps(out, kinds=("tmp",))  # left by killed runs (not by live ones: they hold theirs)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:10]}")
    tmp.mkdir(parents=True)
    held = hold_temp(tmp)
    try:
        return _write_store(tmp, out, tomograms, picks, particles, settings, plan, fp, spacing,
                            a_sigma, d_sigma, rs_sigma, cls_ids_all, psz, progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(held)


def _write_store(tmp, out, tomograms, picks, particles, settings, plan, fp, spacing,
                 a_sigma, d_sigma, rs_sigma, cls_ids_all, psz, progress) -> dict:
    P = len(plan)
    f = settings.ds_factor
    images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.float32,
                                       shape=(P,) + tuple(settings.patch_size))
    hshape = coords.ds_shape(settings.patch_size, f)
    heat = None
    if settings.precompute_heatmaps:
        heat = np.lib.format.open_memmap(tmp / "heatmaps.npy", mode="w+", dtype=np.float32,
                                         shape=(P, len(particles)) + hshape)
    origins = np.zeros((P, 3), np.int64)
    patch_tomo = np.zeros(P, np.int64)
    kp_rows: list[tuple] = []
    offsets = np.zeros(P + 1, np.int64)
    norm_stats = {}

    it = range(P)
    if progress:
        it = tqdm(it, desc="prepare", unit="patch")
    cur_t = -1
    for pi in it:
        ti, o = plan[pi]
        t = tomograms[ti]
        if ti != cur_t:
            cur_t = ti
            if settings.normalization == "robust_zscore":
                try:
                    med, sc = robust_stats(t.data)
                except ValueError as e:
                    raise ValueError(f"{t.path or t.name}: {e}") from None
            else:
                med, sc = 0.0, 1.0
            norm_stats[t.name] = {"median": med, "scale": sc}
            sel = np.nonzero(picks.tomo == t.name)[0]
            t_xyz = picks.xyz[sel]
            t_vox = coords.angstrom_to_voxel(t_xyz, spacing)
            t_cls = cls_ids_all[sel]
        raw = cut_patch(t.data, o, settings.patch_size, fill=med)
        images[pi] = normalize(raw, med, sc) if settings.normalization != "none" else raw
        origins[pi] = o
        patch_tomo[pi] = ti
        local = coords.global_to_local(t_vox, o)
        keep = coords.in_voxel_extent(local, psz, coords.KEYPOINT_MARGIN_SIGMAS * rs_sigma[t_cls][:, None])
        k_local = local[keep]
        k_ds = coords.voxel_to_ds(k_local, f)
        kp_rows.append((t_cls[keep], t_xyz[keep], k_local, k_ds))
        offsets[pi + 1] = offsets[pi] + int(keep.sum())
        if heat is not None:
            heat[pi] = render_heatmap(k_ds, t_cls[keep], hshape, d_sigma)
    images.flush()
    del images
    if heat is not None:
        heat.flush()
        del heat
    cat = lambda j, w: np.concatenate([r[j] for r in kp_rows]) if kp_rows else np.zeros((0, w))  # noqa: E731
    np.savez(
        tmp / "keypoints.npz",
        class_id=cat(0, 0).astype(np.int64).reshape(-1),
        global_coords=cat(1, 3).reshape(-1, 3),
        local_rs_coords=cat(2, 3).reshape(-1, 3),
        local_ds_coords=cat(3, 3).reshape(-1, 3),
    )
    np.save(tmp / "origins.npy", origins)
    np.save(tmp / "patch_tomo.npy", patch_tomo)
    np.save(tmp / "kp_offsets.npy", offsets)
    manifest = {
        "kind": "cryo3d-patch-store",
        "version": STORE_VERSION,
        "fingerprint": fp,
        "n_patches": P,
        "n_keypoints": int(offsets[-1]),
        "patch_size": list(settings.patch_size),
        "stride": list(settings.stride),
        "ds_factor": f,
        "heatmap_shape": list(hshape),
        "voxel_spacing": spacing,
        "angstrom_sigma": a_sigma.tolist(),
        "ds_sigma": d_sigma.tolist(),
        "margin_sigmas": coords.KEYPOINT_MARGIN_SIGMAS,
        "particles": particles.to_dict(),
        "normalization": {
            "method": settings.normalization,
            "clip": NORM_CLIP if settings.normalization != "none" else None,
            "stats": norm_stats,
        },
        "precomputed_heatmaps": bool(settings.precompute_heatmaps),
        "tomograms": [
            {"name": t.name, "shape": list(t.shape), "path": str(t.path or ""),
             "n_picks": int(np.sum(picks.tomo == t.name))}
            for t in tomograms
        ],
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    check_store_target(out)  # still nothing but our own store there (checked again: time has passed)
    if out.exists():
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:10]}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
    return manifest


#: The files ``prepare`` writes into a store folder (anything else there is the user's).
STORE_FILES = frozenset({"manifest.json", "images.npy", "heatmaps.npy", "keypoints.npz", "origins.npy",
                         "patch_tomo.npy", "kp_offsets.npy"})


def check_store_target(out: str | os.PathLike) -> None:
    """Refuse a store folder that holds anything ``prepare`` did not write.

    ``out`` may be missing, empty, or a store of ours (a ``manifest.json`` of kind
    ``cryo3d-patch-store`` and only the store's own files): only then may it be reused or
    (with ``--overwrite``) replaced. A data folder, a synth folder or any other folder is
    never deleted.

    Raises:
        Cryo3DError: Naming the folder and what in it is not the store's.
    """
    o = Path(out)
    if not o.exists():
        return
    if not o.is_dir():
        raise Cryo3DError(f"--out {o} is a file, not a folder; give a new or empty folder for the store")
    entries = [p.name for p in o.iterdir()]
    if not entries:
        return
    kind = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        kind = json.loads((o / "manifest.json").read_text()).get("kind")
    if kind != "cryo3d-patch-store":
        raise Cryo3DError(f"--out {o} is a folder that is not a cryo3d store (holds {sorted(entries)[:3]}); "
                          "prepare never replaces it, even with --overwrite. Give a new or empty folder")
    foreign = sorted(set(entries) - STORE_FILES)
    if foreign:
        raise Cryo3DError(f"--out {o} is a cryo3d store that also holds files prepare did not write "
                          f"({foreign[:3]}); move them out or give another folder")


class _Resampled:
    """A tomogram resampled to ``spacing`` (in memory), with the fields ``prepare_store`` reads."""

    def __init__(self, t, spacing: float) -> None:
        self.name, self.path = t.name, t.path
        self.data, _ = to_spacing(t.data, float(t.voxel_spacing), spacing)
        self.voxel_spacing = float(spacing)
        self.shape = tuple(self.data.shape)


def _fingerprint(tomograms, picks: Picks, particles: ParticleSet, settings: StoreSettings) -> str:
    """Hash of the inputs and settings (tomogram names, shapes, spacings, a data sample, picks)."""
    h = hashlib.sha256()
    for t in tomograms:
        h.update(f"{t.name}|{tuple(t.shape)}|{t.voxel_spacing!r}".encode())
        s = [max(1, n // 8) for n in t.shape]
        h.update(np.ascontiguousarray(np.asarray(t.data[:: s[0], :: s[1], :: s[2]], dtype=np.float32)).tobytes())
    order = np.lexsort((picks.xyz[:, 2], picks.xyz[:, 1], picks.xyz[:, 0]))
    h.update("|".join(f"{a},{b}" for a, b in zip(picks.tomo[order], picks.cls[order])).encode())
    h.update(np.round(picks.xyz[order], 4).tobytes())
    h.update(json.dumps(particles.to_dict(), sort_keys=True).encode())
    h.update(json.dumps(
        {k: list(v) if isinstance(v, tuple) else v for k, v in settings.__dict__.items()}, sort_keys=True
    ).encode())
    h.update(str(STORE_VERSION).encode())
    return h.hexdigest()[:16]


class PatchStore:
    """Read access to a store folder: memory-mapped arrays, random access by patch index.

    Example:
        >>> store = PatchStore("data/store")            # doctest: +SKIP
        >>> rec = store.record(0)                       # doctest: +SKIP
        >>> rec["image"].shape, rec["keypoints"].shape  # doctest: +SKIP
        ((1, 64, 64, 64), (12, 3))
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        man = self.path / "manifest.json"
        if not man.exists():
            raise FileNotFoundError(f"{self.path}: not a patch store (no manifest.json); run `cryo3d prepare` first")
        self.manifest = json.loads(man.read_text())
        if self.manifest.get("kind") != "cryo3d-patch-store":
            raise ValueError(f"{man}: field 'kind' is {self.manifest.get('kind')!r}, expected 'cryo3d-patch-store'")
        self.images = np.load(self.path / "images.npy", mmap_mode="r")
        self.origins = np.load(self.path / "origins.npy")
        self.patch_tomo = np.load(self.path / "patch_tomo.npy")
        self.kp_offsets = np.load(self.path / "kp_offsets.npy")
        kp = np.load(self.path / "keypoints.npz")
        self.class_id = kp["class_id"]
        self.global_coords = kp["global_coords"]
        self.local_rs_coords = kp["local_rs_coords"]
        self.local_ds_coords = kp["local_ds_coords"]
        hp = self.path / "heatmaps.npy"
        self.heatmaps = np.load(hp, mmap_mode="r") if hp.exists() else None
        self.particles = ParticleSet.from_dict(self.manifest["particles"])
        self.tomo_names = [t["name"] for t in self.manifest["tomograms"]]
        self.ds_factor = int(self.manifest["ds_factor"])
        self.ds_sigma = np.asarray(self.manifest["ds_sigma"], dtype=np.float64)
        self.angstrom_sigma = np.asarray(self.manifest["angstrom_sigma"], dtype=np.float64)
        self.voxel_spacing = float(self.manifest["voxel_spacing"])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.particles)

    def indices_for(self, tomograms: Sequence[str]) -> np.ndarray:
        """Patch indices of the named tomograms (unknown names are an error)."""
        ids = []
        for n in tomograms:
            if n not in self.tomo_names:
                raise ValueError(f"{self.path}: tomogram {n!r} is not in this store; it has {self.tomo_names}")
            ids.append(self.tomo_names.index(n))
        return np.nonzero(np.isin(self.patch_tomo, ids))[0]

    def record(self, i: int) -> dict:
        """The transform dictionary of patch ``i`` (``ARCHITECTURE.md``, 'Transform dictionaries').

        Keys: ``image`` float32 ``[1, Z, Y, X]``; ``keypoints`` float64 ``[K, 3]`` z-y-x in
        full-resolution patch voxels; ``labels`` int64 ``[K]``; ``global_coords`` ``[K, 3]``
        Angstrom x-y-z; ``local_ds_coords`` ``[K, 3]``; ``ds_factor``; ``ds_sigma`` ``[C]``;
        ``angstrom_sigma`` ``[C]``; ``voxel_spacing``; ``tomo``; ``origin`` ``[3]``;
        ``patch_index``; and ``heatmap`` ``[C, z, y, x]`` when precomputed.
        """
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"patch index {i} out of range for a store of {len(self)} patches")
        a, b = int(self.kp_offsets[i]), int(self.kp_offsets[i + 1])
        rec = {
            "image": np.array(self.images[i], dtype=np.float32)[None],
            "keypoints": self.local_rs_coords[a:b].copy(),
            "labels": self.class_id[a:b].copy(),
            "global_coords": self.global_coords[a:b].copy(),
            "local_ds_coords": self.local_ds_coords[a:b].copy(),
            "ds_factor": self.ds_factor,
            "ds_sigma": self.ds_sigma.copy(),
            "angstrom_sigma": self.angstrom_sigma.copy(),
            "voxel_spacing": self.voxel_spacing,
            "tomo": self.tomo_names[int(self.patch_tomo[i])],
            "origin": self.origins[i].copy(),
            "patch_index": i,
        }
        if self.heatmaps is not None:
            rec["heatmap"] = np.array(self.heatmaps[i], dtype=np.float32)
        return rec
