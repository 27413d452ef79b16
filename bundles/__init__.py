"""The MONAI bundles shipped with cryo3d, installed as ``cryo3d.bundles``.

This file makes ``bundles/`` a package so that its configs install as package data and
are found through :mod:`importlib.resources` (:mod:`cryo3d.workflows.bundle`), in a
wheel as in a source checkout. ``cryo3d bundle-path`` prints where they are.
"""
