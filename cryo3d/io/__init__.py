"""File I/O: tomograms (MRC, NIfTI, OME-Zarr) and picks (CSV, copick JSON, RELION STAR).

Readers return arrays indexed ``[z, y, x]`` with the voxel spacing in Angstrom, and picks
with centres ``(x, y, z)`` in Angstrom; writers are atomic. See ``ARCHITECTURE.md``,
"What users hand us and get back", for the file conventions. One module per format:

* :mod:`cryo3d.io.tomogram`: MRC and NIfTI tomograms (:class:`~cryo3d.io.tomogram.Tomogram`);
  :mod:`cryo3d.io.omezarr`: copick's OME-Zarr tomograms.
* :mod:`cryo3d.io.pick_formats`: ``read_picks`` / ``write_picks`` by file ending, over
  :mod:`cryo3d.io.picks_csv` (the CSV table), :mod:`cryo3d.io.copick_picks` (copick JSON
  files and roots, through :mod:`cryo3d.io.copick_files`) and :mod:`cryo3d.io.star` (RELION).
* :mod:`cryo3d.io.pick_validation`: picks against their tomograms' extents.
* :mod:`cryo3d.io.copick_project`: a whole copick project; :mod:`cryo3d.io.atomic`: atomic writes.
"""
