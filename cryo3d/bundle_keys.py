"""Values of bundle keys as MONAI's command line hands them over.

``python -m monai.bundle run ... --voxel_spacing null`` passes the *string* ``'null'``
(and ``--time_budget 5`` may arrive as ``5`` or ``'5'``), so a key that takes "a number,
``auto`` or null" must read all of these the same way. One parser here per kind of key, used by
:mod:`cryo3d.resolution`, :mod:`cryo3d.workflows.budget`, :mod:`cryo3d.workflows.data`
(``n_val``, ``n_test_tomograms``) and :mod:`cryo3d.workflows.plateau` (``early_stop_patience``),
so every such key behaves alike. A key that names one of a few choices or none (``trust_spacing``:
``zarr``, ``copick`` or null) is read by :func:`parse_choice_key`, where ``false`` (YAML's or
MONAI's string) means none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from cryo3d.options import FALSE_WORDS

#: Strings that mean "no value" (YAML null as MONAI's CLI passes it, and common spellings).
NULL_WORDS = ("", "null", "none")


def parse_positive_key(value: Any, field: str, expected: str, null_words: tuple[str, ...] = NULL_WORDS) -> float | str | None:
    """A positive number, ``"auto"``, or ``None`` from a bundle key.

    Args:
        value: the key's value (number, numeric string, ``"auto"``, a null word or None).
        field: the key's name, for the error message.
        expected: what the number means, for the error message (e.g. ``"minutes"``).
        null_words: lower-case strings read as None.

    Returns:
        A positive finite float, the string ``"auto"``, or None.

    Raises:
        ValueError: naming the key and what was expected.
    """
    if value is None:
        return None
    if isinstance(value, str):
        s = value.strip().lower()
        if s in null_words:
            return None
        if s == "auto":
            return "auto"
        try:
            value = float(s)
        except ValueError:
            raise ValueError(f"{field}: expected {expected}, 'auto' or null, got {value!r}") from None
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{field}: expected a positive number ({expected}), 'auto' or null, got {value!r}")
    return v


def parse_choice_key(value: Any, field: str, choices: Sequence[str]) -> str | None:
    """One of ``choices``, or None, from a bundle key.

    Args:
        value: the key's value: one of ``choices`` (any case), or None, ``False``, a null word
            (:data:`NULL_WORDS`) or a false word (``false``, ``no``, ``off``, ``0``) for none.
        field: the key's name, for the error message.
        choices: the accepted values, lower-case.

    Returns:
        The choice (lower-case), or None.

    Raises:
        ValueError: naming the key, the value and the choices.

    Example:
        >>> parse_choice_key("false", "trust_spacing", ("zarr", "copick"))
        >>> parse_choice_key("Copick", "trust_spacing", ("zarr", "copick"))
        'copick'
    """
    if value is None or value is False:
        return None
    if isinstance(value, str):
        word = value.strip().lower()
        if word in NULL_WORDS or word in FALSE_WORDS:
            return None
        if word in choices:
            return word
    raise ValueError(f"{field}: expected one of {list(choices)} or null, got {value!r}")


def parse_count_key(value: Any, field: str, expected: str, minimum: int = 1, auto: bool = False,
                    null_words: tuple[str, ...] = ()) -> int | str | None:
    """A whole number ``>= minimum`` (or ``"auto"``, or None) from a bundle key.

    Args:
        value: the key's value (int, a whole float, a numeric string, ``"auto"`` or a null word).
        field: the key's name, for the error message.
        expected: what the number counts, for the error message (e.g. ``"tomograms"``).
        minimum: the smallest allowed number.
        auto: whether ``"auto"`` is allowed (returned as the string ``"auto"``).
        null_words: lower-case strings read as None (and None itself); empty: None is refused.

    Returns:
        An int ``>= minimum``, ``"auto"``, or None.

    Raises:
        ValueError: naming the key and what was expected.
    """
    words = (["'auto'"] if auto else []) + (["null"] if null_words else [])
    wanted = f"a whole number of {expected} >= {minimum}" + "".join(f" or {w}" for w in words)
    if value is None and null_words:
        return None
    if isinstance(value, str):
        s = value.strip().lower()
        if s in null_words:
            return None
        if auto and s == "auto":
            return "auto"
        try:
            value = float(s)
        except ValueError:
            raise ValueError(f"{field}: expected {wanted}, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{field}: expected {wanted}, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v != int(v) or v < minimum:
        raise ValueError(f"{field}: expected {wanted}, got {value!r}")
    return int(v)
