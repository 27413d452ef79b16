"""See the picks: a static HTML report of tomograms, picks and their outcomes.

``write_report`` renders a folder (``index.html`` + PNGs + ``report.json``) that opens in a
browser without a server; :class:`TrainingReportHandler` writes one into a training run;
``cryo3d report``, ``cryo3d predict --report`` and ``cryo3d evaluate --report`` call it.
Modules: :mod:`~cryo3d.report.outcomes` (TP / FP / missed, confusion),
:mod:`~cryo3d.report.slabs` (array side), :mod:`~cryo3d.report.rendering` (tomogram
images), :mod:`~cryo3d.report.curves` (curves), :mod:`~cryo3d.report.page` (HTML),
:mod:`~cryo3d.report.build` (the folder), :mod:`~cryo3d.report.handler` (training),
:mod:`~cryo3d.report.palette` (colours) (its commands: :mod:`cryo3d.commands.report`),
:mod:`~cryo3d.report.viewer` (napari).
"""

from cryo3d.report.build import ReportVolume, load_heatmaps, write_report
from cryo3d.report.handler import TrainingReportHandler

__all__ = ["ReportVolume", "write_report", "load_heatmaps", "TrainingReportHandler"]
