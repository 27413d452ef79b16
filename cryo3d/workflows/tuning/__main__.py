"""``python -m cryo3d.workflows.tuning [options]``: the same as ``cryo3d tune``."""

from cryo3d.workflows.tuning.command import main

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
