"""The one cattrs converter: values to plain data (JSON, SQLite) and back.

Structuring untrusted data (an API body, a blueprint file, a database row) either returns
a validated value or raises :class:`SpecError` with one sentence naming the bad field;
unknown fields are refused, not ignored, and values of the wrong type are refused, not
converted: ``1.5`` or ``"3"`` is not a whole number, ``1`` is not text, ``"yes"`` is not
true. A whole number is a number of seconds too; ``NaN`` and infinities are no numbers.
"""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from cattrs.gen import make_dict_structure_fn

from dployr.errors import SpecError

T = TypeVar("T")

converter = cattrs.Converter(forbid_extra_keys=True)


class WrongType(SpecError):
    """A value of the wrong JSON type (cattrs would otherwise convert it)."""


def _whole(value: Any, _: type) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 3.0 is the whole number 3 in JSON (and in JSON Schema)
    if isinstance(value, bool) or not isinstance(value, int):
        raise WrongType(f"must be a whole number, not {_shown(value)}")
    return value


def _number(value: Any, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WrongType(f"must be a number, not {_shown(value)}")
    if not math.isfinite(value):
        raise WrongType(f"must be a finite number, not {value!r}")
    return float(value)


def _text(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise WrongType(f"must be text, not {_shown(value)}")
    return value


def _truth(value: Any, _: type) -> bool:
    if not isinstance(value, bool):
        raise WrongType(f"must be true or false, not {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


def _objects_only(cls: type, conv: cattrs.Converter) -> Any:
    """The structure function of an attrs class, refusing anything but a JSON object."""
    inner: Any = make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=True)

    def structure(value: Any, _: type) -> Any:
        if not isinstance(value, dict):
            raise WrongType(f"must be an object, not {_shown(value)}")
        return inner(value, cls)

    return structure


converter.register_structure_hook_factory(attrs.has, _objects_only)
converter.register_structure_hook(int, _whole)
converter.register_structure_hook(float, _number)
converter.register_structure_hook(str, _text)
converter.register_structure_hook(bool, _truth)


def _first_error(error: BaseException, path: str = "") -> tuple[str, BaseException]:
    """Find the innermost error of a cattrs error group, with the field path leading to it."""
    if isinstance(error, ForbiddenExtraKeysError):
        return path, error
    if isinstance(error, ClassValidationError | IterableValidationError):
        for sub in error.exceptions:
            note = next((str(n) for n in getattr(sub, "__notes__", [])), "")
            field = ""
            if "attribute " in note:
                field = note.split("attribute ", 1)[1].split(" ", 1)[0].strip("'")
            elif "@ index" in note:
                field = note.rsplit(" ", 1)[-1]
            return _first_error(sub, f"{path}.{field}" if path and field else path or field)
    return path, error


def structure(data: Any, cls: type[T], *, converter: cattrs.Converter = converter) -> T:
    """Build a ``cls`` from plain data, or raise SpecError with a one-line reason.

    ``converter``: this one's copy with more hooks (the protocol's codec).
    """
    try:
        return converter.structure(data, cls)
    except WrongType as error:
        raise SpecError(f"the value {error}") from None
    except SpecError:
        raise
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as error:
        path, cause = _first_error(error)
        if isinstance(cause, WrongType):
            raise SpecError(f"{path or 'the value'} {cause}") from None
        if isinstance(cause, SpecError):
            raise SpecError(str(cause)) from None
        if isinstance(cause, ForbiddenExtraKeysError):
            keys = ", ".join(sorted(cause.extra_fields))
            where = f" in {path}" if path else ""
            raise SpecError(
                f"unknown field{'s' if len(cause.extra_fields) > 1 else ''}{where}: {keys}"
            ) from None
        if isinstance(cause, KeyError):
            missing = cause.args[0] if cause.args else "?"
            raise SpecError(f"missing field: {missing}") from None
        what = f"field {path!r}" if path else "value"
        raise SpecError(f"invalid {what}: {cause}") from None


def unstructure(value: Any) -> Any:
    """Plain data (dicts, lists, strings, numbers) for a value."""
    return converter.unstructure(value)


def dumps(value: Any) -> str:
    """A value as compact JSON."""
    return json.dumps(unstructure(value), separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes, cls: type[T]) -> T:
    """A value of ``cls`` from JSON text."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError(
            f"malformed JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    return structure(data, cls)
