"""Time fingerprinting a tomogram the size of a CZII one: whole-file hashes against the sampled one.

``cryo3d predict`` reuses a tomogram's stored result only when the tomogram's content
fingerprint is unchanged (:func:`cryo3d.results.file_fingerprint`). This measures what hashing
every byte costs (SHA-256 and BLAKE2b, MB/s) beside the old sample of 64 blocks, on a float32
MRC of 184 x 630 x 630 voxels (292 MB) by default, so that the choice of what the fingerprint
covers rests on a figure. Inference of such a tomogram takes tens of seconds, and it reads
every byte of the file anyway.

    python scripts/bench_fingerprint.py                  # 184 630 630, in a temporary folder
    python scripts/bench_fingerprint.py --shape 64 256 256 --repeats 5

The file is written, then hashed from the page cache (warm: the figure is the hash's own
speed). A cold read is bounded by the disk, which inference pays too.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import mrcfile
import numpy as np

from cryo3d.results import file_fingerprint

_CHUNK = 2**20


def _write_tomogram(path: Path, shape: tuple[int, int, int], seed: int = 0) -> int:
    """A float32 MRC of ``shape`` ([z, y, x]) filled slab by slab with noise; returns its size in bytes."""
    rng = np.random.default_rng(seed)
    with mrcfile.new_mmap(path, shape=shape, mrc_mode=2, overwrite=True) as m:
        m.voxel_size = 10.0
        for z0 in range(0, shape[0], 16):
            m.data[z0 : z0 + 16] = rng.standard_normal((min(16, shape[0] - z0), *shape[1:]), dtype=np.float32)
    return path.stat().st_size


def _hash_file(path: Path, algorithm: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def _sampled(path: Path) -> str:
    """The old sampled fingerprint: the first MiB and 65 blocks of 64 KiB spread over the rest."""
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(_CHUNK))
        span = size - _CHUNK - 2**16
        for i in range(65):
            f.seek(_CHUNK + span * i // 64)
            h.update(f.read(2**16))
    return h.hexdigest()


def _time(fn, repeats: int) -> float:
    fn()  # warm the page cache
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[184, 630, 630], metavar=("Z", "Y", "X"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", help="folder for the test file (default: a temporary folder)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        path = Path(d) / "tomogram.mrc"
        size = _write_tomogram(path, tuple(a.shape))
        mb = size / 1e6
        print(f"tomogram {tuple(a.shape)} float32: {mb:.0f} MB")
        rows = [
            ("sha256, whole file", lambda: _hash_file(path, "sha256")),
            ("blake2b, whole file", lambda: _hash_file(path, "blake2b")),
            ("sampled (old: 1 MiB + 65 x 64 KiB)", lambda: _sampled(path)),
            ("cryo3d.results.file_fingerprint", lambda: file_fingerprint(path)),
        ]
        for name, fn in rows:
            s = _time(fn, a.repeats)
            print(f"{name:<36} {s:8.3f} s  {mb / s:9.0f} MB/s of the file")


if __name__ == "__main__":
    main()
