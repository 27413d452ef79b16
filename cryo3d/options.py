"""Option values from the command line and bundle configs, read strictly as data.

Two rules every command and bundle config share:

* **Booleans** (:func:`parse_flag`): MONAI's command line hands ``--write_report false``
  over as the *string* ``'false'``, which Python reads as true. A flag key is read with
  one parser: ``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0`` (any case)
  and real booleans; anything else is an error naming the key.
* **Values are data** (:func:`check_data_value`): a value given on the command line must
  not become code in MONAI's config syntax. A string starting with ``$`` (an
  expression), ``%`` (a macro: another file's item, possibly an expression) or ``@`` (a
  reference), and a mapping with a component key (``_target_``, ``_requires_``,
  ``_disabled_``, ``_desc_``, ``_mode_``) are refused at any depth of nested
  dicts, lists and tuples.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryo3d.errors import Cryo3DError

#: Strings read as True / False by :func:`parse_flag` (compared lower-case, stripped).
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")

#: The prefixes that make a MONAI config string code: expression, macro, reference.
CODE_PREFIXES = {"$": "a '$' expression", "%": "a '%' macro", "@": "an '@' reference"}
#: Keys that make a MONAI config mapping a component (instantiated, or run, by the parser).
COMPONENT_KEYS = ("_target_", "_requires_", "_disabled_", "_desc_", "_mode_")


def parse_flag(value: Any, field: str) -> bool:
    """A boolean option, read strictly.

    Args:
        value: a bool, the int 0 or 1, or one of :data:`TRUE_WORDS` / :data:`FALSE_WORDS` in any case.
        field: the key's name, for the error message.

    Returns:
        The boolean.

    Raises:
        Cryo3DError: for any other value, naming ``field`` and the accepted words.

    Example:
        >>> parse_flag("false", "write_report"), parse_flag("On", "sweep"), parse_flag(1, "sweep")
        (False, True, True)
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise Cryo3DError(f"{field}: expected true or false (also yes/no, on/off, 1/0), got {value!r}")


def check_data_value(value: Any, field: str) -> Any:
    """``value`` unchanged when it is plain data; an error when MONAI would read it as code.

    Args:
        value: a value parsed from the command line (str, number, bool, None, or nested
            dicts / lists / tuples of those).
        field: where it came from (e.g. ``"--network_overrides"``), for the error message.

    Returns:
        ``value``.

    Raises:
        Cryo3DError: naming ``field`` and the offending part, for a string starting with
            ``$``, ``%`` or ``@``, or a mapping holding a component key, at any depth.
    """
    where = _code_in(value, "")
    if where is not None:
        path, what = where
        at = f" (at {path})" if path else ""
        raise Cryo3DError(f"{field}{at}: {what} is code, and values given on the command line are data; "
                          "write it in a config file and pass --config-file")
    return value


def _code_in(value: Any, path: str) -> tuple[str, str] | None:
    """``(path, description)`` of the first piece of config code in ``value``, or None."""
    if isinstance(value, str):
        head = value.lstrip()[:1]
        return (path, f"{CODE_PREFIXES[head]} {value!r}") if head in CODE_PREFIXES else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            sub = f"{path}#{key}" if path else str(key)
            if isinstance(key, str) and key.strip() in COMPONENT_KEYS:
                return sub, f"the component key {key!r} (it makes MONAI build or run an object)"
            found = _code_in(key, sub) or _code_in(item, sub)
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple, set, frozenset)):
        for i, item in enumerate(value):
            found = _code_in(item, f"{path}#{i}" if path else str(i))
            if found is not None:
                return found
    return None


def check_data_key(key: str, field: str) -> str:
    """A config key path given on the command line (``network_def#channels``), refused when a
    part of it is a component key (``train#dataset#_target_``) or starts like code.

    Args:
        key: the key path (``#``-separated).
        field: the option as given, for the error message.

    Returns:
        ``key``.

    Raises:
        Cryo3DError: naming ``field``.
    """
    for part in key.split("#"):
        if part.strip() in COMPONENT_KEYS:
            raise Cryo3DError(f"{field}: sets the component key {part!r}, which makes MONAI build or run an "
                              "object; command-line values are data: write it in a config file and pass --config-file")
        if part.lstrip()[:1] in CODE_PREFIXES:
            raise Cryo3DError(f"{field}: a key starting with {part.lstrip()[:1]!r} is config syntax, not a key")
    return key


def check_component_flags(values: Mapping[str, Any]) -> None:
    """Refuse boolean component arguments that MONAI's command line handed over as words.

    ``python -m monai.bundle run ... --train#dataloader#shuffle false`` sets the component's
    argument to the string ``'false'``, which the component reads as true; nothing between
    the command line and the component converts it (``cryo3d train`` does). The bundle's
    ``initialize`` calls this with its nested boolean arguments, so such a run stops before
    it trains instead of silently doing the opposite.

    Args:
        values: ``#`` key path -> the value the component will get.

    Raises:
        Cryo3DError: naming the first key whose value is not a boolean (or 0/1).
    """
    for key, value in values.items():
        key = key.replace("::", "#")  # MONAI spells '#' as '::' inside expressions
        if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            continue
        flag = parse_flag(value, key)
        raise Cryo3DError(f"{key}: {value!r} would reach the component as a string, which reads as true; "
                          f"give {flag} (capitalised) or 0/1 to python -m monai.bundle run, or use cryo3d train, "
                          "which reads any boolean word")
