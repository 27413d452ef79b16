"""File I/O: tomograms (MRC, NIfTI) and picks (CSV, copick JSON, RELION-style STAR).

Readers return arrays indexed ``[z, y, x]`` with the voxel spacing in Angstrom, and picks
with centres ``(x, y, z)`` in Angstrom; writers are atomic. See ``ARCHITECTURE.md``,
"What users hand us and get back", for the file conventions.
"""

from cryo3d.io.picks import (
    read_copick,
    read_copick_json,
    read_picks,
    read_picks_csv,
    read_star,
    validate_picks,
    write_copick,
    write_copick_json,
    write_picks,
    write_picks_csv,
    write_star,
)
from cryo3d.io.tomogram import Tomogram, read_tomogram, tomogram_name, write_mrc, write_nifti

__all__ = [
    "Tomogram",
    "read_tomogram",
    "write_mrc",
    "write_nifti",
    "tomogram_name",
    "read_picks_csv",
    "write_picks_csv",
    "read_copick_json",
    "read_copick",
    "write_copick_json",
    "write_copick",
    "read_star",
    "write_star",
    "read_picks",
    "write_picks",
    "validate_picks",
]
