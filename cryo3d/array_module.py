"""Array-module dispatch: the same code runs on NumPy/SciPy (CPU) and CuPy/cupyx (GPU).

CuPy is optional (the ``gpu`` extra) and imported lazily, only when an array already
lives on the GPU or the caller asks for it. Torch tensors cross to and from CuPy by
DLPack without copies.
"""

from __future__ import annotations

import functools
import sys
from types import ModuleType
from typing import Any

import numpy as np


@functools.lru_cache(maxsize=1)
def _cupy() -> ModuleType | None:
    try:
        import cupy  # noqa: F401

        return cupy
    except Exception:  # ImportError, or a CUDA runtime that fails to load
        return None


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    cp = _cupy()
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def is_cupy_array(x: Any) -> bool:
    """True when ``x`` is a CuPy array (without importing CuPy if it is not loaded)."""
    return type(x).__module__.split(".")[0] == "cupy"


def get_xp(*arrays: Any) -> ModuleType:
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``."""
    for a in arrays:
        if is_cupy_array(a):
            return _cupy()
    return np


def get_ndimage(xp: ModuleType) -> ModuleType:
    """``scipy.ndimage`` for NumPy, ``cupyx.scipy.ndimage`` for CuPy."""
    if xp is np:
        import scipy.ndimage as ndi  # here: cryo3d.coords imports this module, and stays NumPy-only to import

        return ndi
    import cupyx.scipy.ndimage as cndi  # optional (the gpu extra): only on a GPU

    return cndi


def scatter_max(flat: Any, index: Any, values: Any) -> None:
    """In place ``flat[index] = max(flat[index], values)``, correct for repeated indices."""
    xp = get_xp(flat)
    if xp is np:
        np.maximum.at(flat, index, values)
    else:
        import cupyx  # optional (the gpu extra): only on a GPU

        cupyx.scatter_max(flat, index, values)


def to_numpy(x: Any) -> np.ndarray:
    """Any of NumPy / CuPy / torch -> NumPy (copies from the GPU only when needed)."""
    if isinstance(x, np.ndarray):
        return x
    if is_cupy_array(x):
        return x.get()
    torch = sys.modules.get("torch")  # a tensor exists only once torch is imported: no import here
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def torch_to_xp(t: Any) -> Any:
    """A torch tensor as a NumPy array (CPU) or a CuPy array (CUDA), sharing memory."""
    if t.is_cuda:
        cp = _cupy()
        if cp is None:
            raise RuntimeError(
                "a CUDA tensor needs CuPy for the GPU transform path; install cryo3d[gpu]"
            )
        return cp.from_dlpack(t.detach())
    return t.detach().numpy()


def xp_to_torch(a: Any) -> Any:
    """A NumPy or CuPy array as a torch tensor on the same device, sharing memory."""
    import torch  # here: cryo3d.coords imports this module, and importing torch takes seconds

    if is_cupy_array(a):
        return torch.from_dlpack(a)
    return torch.from_numpy(np.ascontiguousarray(a))
