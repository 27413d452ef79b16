"""cryo3d: find particles in cryo-electron tomograms with MONAI.

Conventions shared by every module (see ``ARCHITECTURE.md``):

* arrays are indexed ``[z, y, x]`` (channels first ``[C, z, y, x]``);
* physical coordinates and picks are ``(x, y, z)`` in Angstrom;
* voxel ``i`` has its centre at ``i * voxel_spacing`` Angstrom;
* downsampled voxel ``j`` at factor ``f`` is centred at full-resolution ``j*f + (f-1)/2``.

All conversions live in :mod:`cryo3d.coords`.
"""

__version__ = "0.1.0"
