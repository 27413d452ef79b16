"""Colours of the report and the viewer: one palette for the classes, one for the outcomes.

Classes are told apart by colour, from one colour-blind-safe palette used by every figure
(slabs, gallery, curves, napari): Okabe-Ito's seven colours (black left out, it vanishes on
a tomogram) followed by Paul Tol's "muted" set, 15 distinct colours before any repeats.
Outcomes are told apart by an achromatic or fully saturated ring that no class colour is
near (:data:`MIN_OUTCOME_DISTANCE` in RGB), and by name in every legend: true positives
green, false positives red, missed particles magenta (not blue: blue reads as a class).
"""

from __future__ import annotations

from cryo3d.report.outcomes import FP, MISSED, TP

__all__ = ["OUTCOME_COLOURS", "OUTCOME_NAMES", "OUTCOME_DARK", "CLASS_PALETTE", "MIN_OUTCOME_DISTANCE", "class_colours",
           "hex_to_rgb"]

#: Ring colour of true positives, false positives and missed particles.
OUTCOME_COLOURS = {TP: "#00ff00", FP: "#ff0000", MISSED: "#ff00ff"}
#: The same outcomes drawn on white (histograms of the curves figure).
OUTCOME_DARK = {TP: "#00a030", FP: "#e01010", MISSED: "#555555"}
OUTCOME_NAMES = {TP: "true positive", FP: "false positive", MISSED: "missed"}

#: Class colours in order: Okabe-Ito (no black; vermillion left out, it is close to the false-positive red),
#: then Tol's muted set.
CLASS_PALETTE = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#CC79A7",
                 "#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255",
                 "#AA4499")

#: Least RGB distance (0..255 per channel) between any outcome colour and any class colour.
MIN_OUTCOME_DISTANCE = 90.0


def class_colours(names: list[str]) -> dict[str, str]:
    """``{class name: hex colour}`` in class order (the palette repeats after 15 classes)."""
    return {n: CLASS_PALETTE[i % len(CLASS_PALETTE)] for i, n in enumerate(names)}


def hex_to_rgb(h: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` -> ``(r, g, b)`` in 0..255."""
    h = h.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
