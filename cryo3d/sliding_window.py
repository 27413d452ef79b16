"""Sliding-window heatmaps of whole tomograms at the network's output stride.

MONAI's ``sliding_window_inference`` sends windows to the model's device (``sw_device``)
and stitches the 1/ds heatmap on the host, or, on a GPU where it fits
(:func:`stitch_fits`), on the GPU with the tomogram, so that windows never cross the bus
and peaks are found there too (:func:`cryo3d.inference.pick_tomogram`). On a GPU the network runs under
bfloat16 autocast in ``channels_last_3d`` layout with as many windows per batch as fill
the free memory (:func:`auto_sw_batch_size`); ``torch.compile`` is optional. On the CPU
the defaults are the measured fastest: float32, contiguous layout, 4 windows per batch.

Geometry at a downsampled output: MONAI maps an input window starting at voxel ``s``
to the output voxel ``s / f``. That is exact only when every window start is a multiple
of ``f``, and MONAI pads small inputs *symmetrically*, which would shift the output.
So :func:`predict_heatmap` pads the tomogram itself, at the far end only, to a multiple
of ``f`` and at least one window, and checks that the window stride is a multiple of
``f``; the output is cropped back to ``coords.ds_shape(shape, f)``. Then heatmap voxel
``j`` is centred at full-resolution ``j*f + (f-1)/2`` as everywhere else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from cryo3d import coords
from cryo3d.normalization import NORM_CLIP
from cryo3d.peak_selection import CLASS_DECISION, CROSS_CLASS_FRACTION, DENSITY_CAP_FACTOR

#: Test-time augmentation (:func:`_tta_ops`): none; the three axis flips added (4 passes); and
#: two quarter turns in y-x added to those (6 passes). The logits of the passes are averaged.
TTA_MODES = ("none", "flips", "flips_rot90")


@dataclass
class InferenceSettings:
    """Settings of whole-tomogram inference (a bundle's ``inference.yaml`` fills these).

    ``sw_batch_size`` is an int or ``"auto"``: 4 on the CPU, and on CUDA as many windows as fit
    in half the free device memory (:func:`auto_sw_batch_size`, at most 64).

    Attributes:
        roi_size: window size in full-resolution voxels (the training patch size).
        ds_factor: the network's output stride.
        overlap: fraction of window overlap; the stride ``roi*(1-overlap)`` must divide by ``ds_factor``.
        blend: ``"gaussian"`` or ``"constant"`` blending of overlapping windows.
        sw_batch_size: windows per forward pass.
        tta: test-time augmentation: ``"none"``, ``"flips"`` (x, y, z flips) or ``"flips_rot90"``.
        thresholds: per-class (or one) minimum peak score.
        min_distance_fraction: NMS distance = this fraction of the particle radius.
        voxel_spacing: the model's voxel spacing in Angstrom; tomograms at another spacing are resampled.
        amp: bfloat16 autocast on CUDA.
        cross_class_fraction: drop a peak within this fraction of the smaller radius of a stronger
            peak of another class (:func:`cryo3d.peak_selection.suppress_cross_class`); 0 turns it off.
        clip: normalised intensities are clipped to ``[-clip, clip]`` (as in the patch store).
        channels_last: run windows and weights in ``torch.channels_last_3d``; None: on CUDA only
            (cuDNN's fast 3D convolutions want it; on the CPU oneDNN is as fast or faster without).
        compile: ``torch.compile`` the network: False, True (inductor) or a backend name
            (``"inductor"``, ``"cudagraphs"``, ``"eager"``, ...). Compiling takes seconds to minutes
            once per process; it pays off over many tomograms.
        class_density: ``[C]`` particles per cubic Angstrom in the training annotations (the
            checkpoint's ``class_density``); None: no density cap.
        density_factor: a class reports at most this many times its annotated density
            (:func:`cryo3d.peak_selection.density_caps`); None or 0: no density cap.
        class_decision: ``"independent"`` or ``"strongest"`` (one particle, one class:
            :func:`cryo3d.peak_selection.strongest_class_keep`).
        score_temperature: ``[C]`` (or one) temperature of the scores (:mod:`cryo3d.temperature`,
            the checkpoint's ``score_temperature``): scores and ``thresholds`` are
            ``sigmoid(logit / T)``; None: ``T = 1`` (a checkpoint from before it).
    """

    roi_size: tuple[int, int, int] = (64, 64, 64)
    ds_factor: int = 2
    overlap: float = 0.25
    blend: str = "gaussian"
    sw_batch_size: int | str = "auto"
    tta: str = "none"
    thresholds: float | Sequence[float] = 0.3
    min_distance_fraction: float = 0.6
    voxel_spacing: float | None = None
    amp: bool = True
    clip: float = NORM_CLIP
    channels_last: bool | None = None
    compile: bool | str = False
    cross_class_fraction: float = CROSS_CLASS_FRACTION
    class_density: Sequence[float | None] | None = None
    density_factor: float | None = DENSITY_CAP_FACTOR
    class_decision: str = CLASS_DECISION
    score_temperature: Sequence[float] | None = None

    def __post_init__(self) -> None:
        self.roi_size = tuple(int(r) for r in (self.roi_size if not np.isscalar(self.roi_size) else (self.roi_size,) * 3))
        f = int(self.ds_factor)
        for r in self.roi_size:
            if r % f:
                raise ValueError(f"roi_size {self.roi_size} must be divisible by ds_factor {f}")
            step = int(r * (1 - self.overlap))
            if step <= 0 or step % f:
                raise ValueError(
                    f"window stride int({r} * (1 - overlap {self.overlap})) = {step} must be a positive multiple of "
                    f"ds_factor {f} so windows map onto whole heatmap voxels; change overlap"
                )
        if self.tta not in TTA_MODES:
            raise ValueError(f"tta must be one of {list(TTA_MODES)}, got {self.tta!r}")
        self.sw_batch_size = parse_sw_batch_size(self.sw_batch_size)
        if not isinstance(self.compile, (bool, str)):
            raise ValueError(f"compile must be True, False or a torch.compile backend name, got {self.compile!r}")


#: Windows per batch on the CPU (measured: more only adds memory), and the most on a GPU.
CPU_SW_BATCH_SIZE = 4
MAX_SW_BATCH_SIZE = 64


def parse_sw_batch_size(value: Any) -> int | str:
    """``"auto"`` or a positive int (also from a command-line or YAML string); else a ValueError."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if isinstance(value, bool) or n < 1 or (not isinstance(value, str) and n != value):
        raise ValueError(f"sw_batch_size: expected a positive integer or 'auto', got {value!r}")
    return n


def use_channels_last(settings: InferenceSettings, device: torch.device) -> bool:
    """Whether windows and weights run in ``channels_last_3d`` on ``device`` (None: on CUDA only)."""
    return device.type == "cuda" if settings.channels_last is None else bool(settings.channels_last)


def prepare_network(network: torch.nn.Module, settings: InferenceSettings,
                    device: str | torch.device) -> torch.nn.Module:
    """The network as inference runs it: on ``device``, eval mode, ``channels_last_3d`` weights
    where :func:`use_channels_last` says so, compiled when ``settings.compile`` asks.

    Moves and converts ``network`` in place (as ``Module.to`` does); returns the module to call
    (the compiled wrapper when compiling). Call it once per process and reuse the result: each
    ``torch.compile`` compiles anew.
    """
    device = torch.device(device)
    network = network.to(device).eval()
    if use_channels_last(settings, device):
        network = network.to(memory_format=torch.channels_last_3d)
    if settings.compile:
        backend = "inductor" if settings.compile is True else str(settings.compile)
        network = torch.compile(network, backend=backend)
    network._cryo3d_prepared = _prepared_key(settings, device)
    return network


def _window_predictor(network: torch.nn.Module, settings: InferenceSettings, device: torch.device):
    """``windows [B, 1, z, y, x] -> logits [B, C, z/f, y/f, x/f]`` float32, as the inferer runs it.

    Logits, not probabilities: windows are blended and test-time passes averaged on the
    logit scale, and a float32 sigmoid would saturate at exactly 1.0 above a logit of about
    16.6, so that a confident model's peaks tie and cannot be ranked
    (:func:`cryo3d.peaks.find_peaks` with ``logits=True`` takes the probability in float64).
    """
    use_amp = settings.amp and device.type == "cuda"
    channels_last = use_channels_last(settings, device)

    def predictor(w: torch.Tensor) -> torch.Tensor:
        if channels_last:
            w = w.contiguous(memory_format=torch.channels_last_3d)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            return network(w).float()

    return predictor


def _cuda_free_bytes(device: torch.device) -> int:
    free, _ = torch.cuda.mem_get_info(device)
    # memory torch has cached but not handed out is free to us too
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


@torch.no_grad()
def auto_sw_batch_size(network: torch.nn.Module, settings: InferenceSettings, device: str | torch.device,
                       reserve_bytes: int = 0, fraction: float = 0.5) -> int:
    """Windows per forward pass that fill the device.

    On the CPU :data:`CPU_SW_BATCH_SIZE`. On CUDA: run one and two windows and read the
    peak memory each needs (``torch.cuda.max_memory_allocated``); the slope is the memory
    per window. The batch fills ``fraction`` of the free memory after ``reserve_bytes``
    (the stitched heatmap, when it stays on the device), at least 1, at most
    :data:`MAX_SW_BATCH_SIZE`.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return CPU_SW_BATCH_SIZE
    predictor = _window_predictor(network, settings, device)
    peaks = []
    for b in (1, 2):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        predictor(torch.zeros((b, 1, *settings.roi_size), device=device))
        torch.cuda.synchronize(device)
        peaks.append(torch.cuda.max_memory_allocated(device) - base)
    per_window = max(peaks[1] - peaks[0], peaks[0] // 2, 1)
    budget = fraction * (_cuda_free_bytes(device) - reserve_bytes)
    return int(min(MAX_SW_BATCH_SIZE, max(1, budget // per_window)))


def stitch_bytes(shape: Sequence[int], channels: int, settings: InferenceSettings) -> int:
    """Device bytes to keep a ``[z, y, x]`` tomogram and its stitched heatmap on the window device.

    float32 throughout: the padded input and one flipped copy, MONAI's stitched output and
    count map, the test-time-augmentation sum and one un-flipped copy of a pass's output.
    """
    roi = settings.roi_size
    padded = _padded_shape(shape, roi, settings.ds_factor)
    n_in = math.prod(padded)
    n_out = math.prod(coords.ds_shape(padded, settings.ds_factor))
    return 4 * (2 * n_in + (3 * channels + 1) * n_out)


def stitch_fits(shape: Sequence[int], channels: int, settings: InferenceSettings, device: str | torch.device,
                fraction: float = 0.5, batch: int = 1) -> bool:
    """Whether ``batch`` tomograms' :func:`stitch_bytes` take at most ``fraction`` of the free memory
    of ``device`` (always False off CUDA: on the CPU the host is where the output is anyway)."""
    device = torch.device(device)
    if device.type != "cuda":
        return False
    return batch * stitch_bytes(shape, channels, settings) <= fraction * _cuda_free_bytes(device)


def _tta_ops(kind: str) -> list[tuple[tuple[int, ...], int]]:
    """(flip dims, rot90 count in the y-x plane) pairs; applied to [B, C, z, y, x] tensors."""
    if kind == "none":
        return [((), 0)]
    flips = [(), (2,), (3,), (4,)]
    ops = [(f, 0) for f in flips]
    if kind == "flips_rot90":
        ops += [((), 1), ((), 3)]
    return ops


def _padded_shape(shape: Sequence[int], roi: Sequence[int], f: int) -> list[int]:
    """Spatial size after padding at the far end: a multiple of ``f`` and at least one window."""
    return [max(int(r), n) for n, r in zip(coords.ds_padded_shape(shape, f), roi)]


class DownsampledSlidingWindowInferer:
    """MONAI sliding-window inference for a network whose output stride is ``ds_factor``.

    A MONAI ``Inferer`` (callable as ``inferer(inputs, network)``, so ``SupervisedEvaluator``
    takes it): pads ``[B, 1, z, y, x]`` inputs at the far end (see the module docstring),
    runs ``monai.inferers.sliding_window_inference`` with windows on ``sw_device`` and the
    stitched result on ``device`` (host by default), averages optional test-time flips / rot90
    and crops to ``coords.ds_shape``. The result is the network's **logits** (blended, averaged):
    ``torch.sigmoid`` of it is the probability heatmap; peaks take it with ``logits=True``.

    Args:
        settings: an :class:`InferenceSettings` (roi, ds_factor, overlap, blend, tta, ...).
        sw_device: device for the windows (default: the network's device).
        device: device for the stitched output (default CPU: the tomogram stays in host memory);
            ``"auto"``: the window device when the tomogram and heatmap fit there
            (:func:`stitch_fits`; the input is then moved there too), else the host, and the
            host again if the device runs out of memory while stitching.
        progress: show MONAI's per-window progress bar.

    The network is called as given: :func:`prepare_network` converts its weights to
    ``channels_last_3d`` (and compiles it) once; the windows follow ``settings.channels_last``.

    Example:
        >>> inferer = DownsampledSlidingWindowInferer(InferenceSettings(roi_size=64, ds_factor=2))  # doctest: +SKIP
        >>> logits = inferer(volume[None, None], model)   # [1, C, z/2, y/2, x/2]  # doctest: +SKIP
    """

    def __init__(self, settings: InferenceSettings, sw_device: Any = None, device: Any = "cpu",
                 progress: bool = False) -> None:
        self.settings = settings
        self.sw_device = sw_device
        self.device = device if device == "auto" else (torch.device(device) if device is not None else None)
        self.progress = progress

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        st = self.settings
        f = int(st.ds_factor)
        if inputs.ndim != 5:
            raise ValueError(f"inference input must be [B, 1, z, y, x], got shape {tuple(inputs.shape)}")
        shape = tuple(inputs.shape[2:])
        ops = _tta_ops(st.tta)
        roi = list(st.roi_size)
        if any(k for _, k in ops):  # a quarter turn swaps y and x: both must hold either window side
            roi[1] = roi[2] = max(roi[1], roi[2])
        padded = _padded_shape(shape, roi, f)
        try:
            net_device = next(network.parameters()).device
        except StopIteration:
            net_device = inputs.device
        sw_device = torch.device(self.sw_device) if self.sw_device is not None else net_device
        predictor = _window_predictor(network, st, sw_device)
        auto_out = isinstance(self.device, str)  # "auto"
        out_device = inputs.device if self.device is None else self.device
        channels = None
        if (auto_out or st.sw_batch_size == "auto") and sw_device.type == "cuda":
            channels = int(predictor(torch.zeros((1, 1, *st.roi_size), device=sw_device)).shape[1])  # from one window
        need = stitch_bytes(shape, channels, st) * int(inputs.shape[0]) if channels else 0
        if auto_out:
            fits = channels is not None and stitch_fits(shape, channels, st, sw_device, batch=int(inputs.shape[0]))
            out_device = sw_device if fits else torch.device("cpu")
        sw_batch = st.sw_batch_size
        if sw_batch == "auto":
            reserve = need if out_device.type == "cuda" else 0
            sw_batch = auto_sw_batch_size(network, st, sw_device, reserve_bytes=reserve)
        try:
            return self._run(inputs, network, predictor, ops, padded, shape, sw_device, out_device, sw_batch)
        except torch.cuda.OutOfMemoryError:
            if not auto_out or out_device.type != "cuda":
                raise
            torch.cuda.empty_cache()  # stitching on the GPU did not fit after all: on the host
            return self._run(inputs, network, predictor, ops, padded, shape, sw_device, torch.device("cpu"), sw_batch)

    def _run(self, inputs, network, predictor, ops, padded, shape, sw_device, out_device, sw_batch) -> torch.Tensor:
        # heavy (most of MONAI, seconds): imported when windows run, not with the settings
        from monai.inferers import sliding_window_inference

        st = self.settings
        f = int(st.ds_factor)
        # the padded input lives where the output is stitched: on a GPU, windows are cut there
        in_device = out_device if out_device.type == "cuda" else inputs.device
        x = torch.zeros((*inputs.shape[:2], *padded), dtype=torch.float32, device=in_device)
        x[:, :, : shape[0], : shape[1], : shape[2]] = torch.as_tensor(inputs, dtype=torch.float32).to(
            in_device, non_blocking=True)
        acc = None
        for dims, k in ops:
            xi = torch.flip(x, dims) if dims else x
            if k:
                xi = torch.rot90(xi, k, dims=(3, 4))
            out = sliding_window_inference(
                xi, st.roi_size, sw_batch, predictor, overlap=st.overlap, mode=st.blend,
                sw_device=sw_device, device=out_device, progress=self.progress,
            )
            if k:
                out = torch.rot90(out, -k, dims=(3, 4))
            if dims:
                out = torch.flip(out, dims)
            acc = out if acc is None else acc + out
        ds = coords.ds_shape(shape, f)
        return (acc / len(ops))[:, :, : ds[0], : ds[1], : ds[2]]


def predict_heatmap(
    model: torch.nn.Module,
    volume: np.ndarray,
    settings: InferenceSettings,
    device: str | torch.device | None = None,
    progress: bool = False,
    keep_on_device: bool = False,
    prepared: bool = False,
) -> np.ndarray | torch.Tensor:
    """Logit heatmap ``[C, z/f, y/f, x/f]`` (float32) of a normalised ``[z, y, x]`` volume.

    ``sigmoid`` of it is the probability heatmap; :func:`cryo3d.peak_selection.heatmap_to_picks`
    takes it with ``logits=True`` (scores that keep their order where a float32 sigmoid saturates).

    Args:
        model: the network (moved to ``device`` and prepared by :func:`prepare_network`
            unless ``prepared``).
        volume: normalised tomogram ``[z, y, x]``.
        settings: the :class:`InferenceSettings`.
        device: where windows run (default: CUDA when available).
        progress: MONAI's per-window progress bar.
        keep_on_device: return a torch tensor, stitched on ``device`` when it fits there
            (a GPU), else on the host; default: a NumPy array on the host.
        prepared: ``model`` already went through :func:`prepare_network` for ``device``.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if not prepared:
        model = prepare_network(model, settings, device)
    x = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
    inferer = DownsampledSlidingWindowInferer(settings, sw_device=device, device="auto", progress=progress)
    hm = inferer(x, model)[0]
    if keep_on_device:
        return hm
    return hm.cpu().numpy().astype(np.float32, copy=False)


def _prepared_key(settings: InferenceSettings, device: torch.device) -> tuple:
    return (str(device), use_channels_last(settings, device), settings.compile)


def is_prepared(model: torch.nn.Module, settings: InferenceSettings, device: torch.device) -> bool:
    """``model`` came from :func:`prepare_network` for these settings and ``device``, and is still in eval mode."""
    return getattr(model, "_cryo3d_prepared", None) == _prepared_key(settings, device) and not model.training
