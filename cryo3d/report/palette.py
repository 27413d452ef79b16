"""Colours of the report: one per outcome, one per particle class.

Outcome colours are saturated and far apart (and from grey), so a pick's ring reads
against a greyscale tomogram and a test can tell them apart by pixel colour.
"""

from __future__ import annotations

from cryo3d.report.outcomes import FP, MISSED, TP

__all__ = ["OUTCOME_COLOURS", "OUTCOME_NAMES", "class_colours", "hex_to_rgb"]

#: Ring colour of true positives, false positives and missed particles.
OUTCOME_COLOURS = {TP: "#00e040", FP: "#ff1a1a", MISSED: "#1a8cff"}
OUTCOME_NAMES = {TP: "true positive", FP: "false positive", MISSED: "missed"}

#: Class colours, chosen to differ from the outcome colours; cycled for more classes.
_CLASS_CYCLE = ["#ffb000", "#e040fb", "#ffff33", "#00e5ff", "#ff80ab", "#b388ff", "#c6ff00", "#ff6e40",
                "#a1887f", "#ffffff"]


def class_colours(names: list[str]) -> dict[str, str]:
    """``{class name: hex colour}`` in class order."""
    return {n: _CLASS_CYCLE[i % len(_CLASS_CYCLE)] for i, n in enumerate(names)}


def hex_to_rgb(h: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` -> ``(r, g, b)`` in 0..255."""
    h = h.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
