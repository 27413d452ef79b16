"""Property-based tests of the CSV, MRC and NIfTI readers.

Generated files must read back to exactly the values written; mutated files (bytes
flipped, cut, inserted, header fields scrambled) must either read to sane values or raise
:class:`~cryo3d.errors.Cryo3DError`: never another exception, never a silent wrong value.
Files are tiny, so 500 examples per property take seconds.
"""

from __future__ import annotations

import csv
import io
import math
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cryo3d.errors import Cryo3DError
from cryo3d.io.picks_csv import read_picks_csv
from cryo3d.io.tomogram import read_tomogram, write_mrc, write_nifti

EXAMPLES = settings(max_examples=500, deadline=None, database=None, suppress_health_check=list(HealthCheck))
WORK = Path(tempfile.mkdtemp(prefix="cryo3d-hypothesis-"))

# ------------------------------------------------------------------ helpers

_names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x00"),
    min_size=1, max_size=8,
).filter(lambda s: s == s.strip() and s != "")
_coord = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e7, max_value=1e7)


@st.composite
def _mutations(draw, data: bytes) -> bytes:
    """A few random edits of ``data``: flip, overwrite, delete, insert, truncate, append."""
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "set", "delete", "insert", "truncate", "append"]))
        n = len(b)
        if kind in ("flip", "set", "delete", "insert") and n == 0:
            kind = "append"
        if kind == "flip":
            i = draw(st.integers(0, n - 1))
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            i = draw(st.integers(0, n - 1))
            b[i:i + 4] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            i = draw(st.integers(0, n - 1))
            del b[i:i + draw(st.integers(1, 16))]
        elif kind == "insert":
            i = draw(st.integers(0, n))
            b[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "truncate":
            del b[draw(st.integers(0, n)):]
        else:
            b += draw(st.binary(min_size=1, max_size=64))
    return bytes(b)


def _read_or_our_error(reader, path: Path):
    """The reader's result, or None when it raised our error; any other exception fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return reader(path)
        except Cryo3DError:
            return None


# ------------------------------------------------------------------ CSV


@st.composite
def _tables(draw):
    n = draw(st.integers(0, 6))
    rows = [(draw(_names), draw(_names), draw(_coord), draw(_coord), draw(_coord), draw(_coord)) for _ in range(n)]
    return rows


def _csv_text(rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["tomo", "class", "x", "y", "z", "score"])
    w.writerows([(t, c, repr(x), repr(y), repr(z), repr(s)) for t, c, x, y, z, s in rows])
    return buf.getvalue()


@EXAMPLES
@given(rows=_tables())
def test_a_generated_csv_reads_back_exactly(rows):
    path = WORK / "gen.csv"
    path.write_text(_csv_text(rows), encoding="utf-8")
    p = read_picks_csv(path)
    assert list(p.tomo) == [r[0] for r in rows] and list(p.cls) == [r[1] for r in rows]
    np.testing.assert_array_equal(p.xyz.reshape(-1, 3), np.array([r[2:5] for r in rows]).reshape(-1, 3))
    np.testing.assert_array_equal(p.score, [r[5] for r in rows])


@EXAMPLES
@given(data=st.data(), rows=_tables())
def test_a_mutated_csv_reads_to_sane_values_or_raises_our_error(data, rows):
    text = _csv_text(rows).encode("utf-8")
    mutated = data.draw(_mutations(text))
    path = WORK / "mut.csv"
    path.write_bytes(mutated)
    p = _read_or_our_error(read_picks_csv, path)
    if p is None:
        return
    assert np.isfinite(p.xyz).all() and np.isfinite(p.score).all()
    assert all(str(t) and str(c) for t, c in zip(p.tomo, p.cls))
    assert len(p) <= mutated.count(b"\n") + mutated.count(b"\r") + 1
    if mutated == text:
        assert len(p) == len(rows)


# ------------------------------------------------------------------ MRC

_dtypes = st.sampled_from([np.int8, np.uint8, np.int16, np.uint16, np.float32])
_spacing = st.floats(min_value=0.1, max_value=100.0, allow_nan=False).map(lambda v: float(np.float32(v)))


@st.composite
def _volumes(draw):
    shape = tuple(draw(st.integers(1, 5)) for _ in range(3))
    dtype = draw(_dtypes)
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        data = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    else:
        data = rng.standard_normal(shape).astype(dtype)
    return data


def _constant(a: np.ndarray) -> bool:
    return bool(a.min() == a.max())


@pytest.mark.parametrize("suffix, write, rel", [
    (".mrc", write_mrc, 1e-6),  # uint8 is stored as uint16 (MRC mode 6)
    (".nii", write_nifti, 1e-5),
], ids=["mrc", "nifti"])
@EXAMPLES
@given(vol=_volumes(), spacing=_spacing)
def test_a_generated_volume_reads_back_exactly(suffix, write, rel, vol, spacing):
    path = WORK / f"gen{suffix}"
    write(path, vol, spacing)
    if _constant(vol):
        with pytest.raises(Cryo3DError, match="empty"):
            read_tomogram(path)
        return
    t = read_tomogram(path, mmap=False)
    assert t.voxel_spacing == pytest.approx(spacing, rel=rel)
    np.testing.assert_array_equal(t.data, vol)


def _header_scrambled(data, raw: bytes, n_slots: int, width: int, stride: int | None = None) -> bytes:
    """``raw`` with 1-3 header slots (slot ``i`` at byte ``i * stride``) replaced by ``width`` random bytes."""
    b = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, n_slots - 1)) * (width if stride is None else stride)
        b[i:i + width] = data.draw(st.binary(min_size=width, max_size=width))
    return bytes(b)


def _mutated_and_read(data, path: Path, write, vol, spacing, **scramble):
    """Write ``vol``, mutate the file (header slots or anywhere), read it: ``(path, raw, mutated, tomogram)``.

    The tomogram is None when reading raised our error; one that reads has passed :func:`_assert_sane`.
    """
    write(path, vol, spacing)
    raw = path.read_bytes()
    mutated = _header_scrambled(data, raw, **scramble) if data.draw(st.booleans()) else data.draw(_mutations(raw))
    path.write_bytes(mutated)
    t = _read_or_our_error(lambda p: read_tomogram(p, mmap=False), path)
    if t is not None:
        _assert_sane(t)
    return path, raw, mutated, t


def _assert_sane(t) -> None:
    """What any tomogram we return satisfies: 3D, non-empty, a positive finite spacing, finite values."""
    assert t.data.ndim == 3 and min(t.data.shape) > 0
    assert math.isfinite(t.voxel_spacing) and t.voxel_spacing > 0
    if np.issubdtype(t.data.dtype, np.floating):
        assert np.isfinite(t.data).all()


@EXAMPLES
@given(data=st.data(), vol=_volumes(), spacing=_spacing)
def test_a_mutated_mrc_reads_to_sane_values_or_raises_our_error(data, vol, spacing):
    assume(not _constant(vol))
    # scramble header words (sizes, mode, cell, axis map, origin, ...) or mutate anywhere
    path, raw, mutated, t = _mutated_and_read(data, WORK / "mut.mrc", write_mrc, vol, spacing, n_slots=56, width=4)
    if t is None:
        return
    # never a silent wrong value: the header's size and mode describe exactly the data that is read
    import mrcfile

    with mrcfile.open(path, permissive=True, header_only=True) as m:
        h = m.header
        expected = 1024 + int(h.nsymbt) + int(h.nx) * int(h.ny) * int(h.nz) * t.data.dtype.itemsize
    assert len(mutated) == expected and t.data.size == int(h.nx) * int(h.ny) * int(h.nz)


# ------------------------------------------------------------------ NIfTI


@EXAMPLES
@given(data=st.data(), vol=_volumes(), spacing=_spacing)
def test_a_mutated_nifti_reads_to_sane_values_or_raises_our_error(data, vol, spacing):
    assume(not _constant(vol))
    # scramble header fields (dim, datatype, pixdim, vox_offset, units, ...) or mutate anywhere
    path, raw, mutated, t = _mutated_and_read(data, WORK / "mut.nii", write_nifti, vol, spacing, n_slots=348, width=2,
                                              stride=1)
    if t is None:
        return
    if mutated == raw:
        np.testing.assert_array_equal(t.data, vol)
