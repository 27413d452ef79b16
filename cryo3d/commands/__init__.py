"""One module per ``cryo3d`` command of the parts: ``run(args)`` does the work.

:mod:`cryo3d.cli` builds every command's parser (argparse only) and imports the module of
the one command that runs, so each module imports what it needs at its top (torch, MONAI,
copick, matplotlib) and ``cryo3d --help`` or a light command never pays for the others.
The workflow commands (``train``, ``bundle-path``, ``tune``) live with their workflows
(:mod:`cryo3d.workflows.bundle_commands`, :mod:`cryo3d.workflows.tuning.command`).
"""
