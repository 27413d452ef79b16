"""The one error type of expected failures (bad input, bad settings, refused outputs).

:class:`Cryo3DError` is a ``ValueError`` (so code that caught ``ValueError`` still does);
its message is one line naming the file, the field and what was expected. The CLI prints
it as ``cryo3d <command>: error: <message>`` and exits with status 2; ``--debug`` shows
the traceback.
"""

from __future__ import annotations


class Cryo3DError(ValueError):
    """An expected failure: the message names the file, the field and what was expected."""
