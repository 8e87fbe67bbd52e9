"""LeetCode-style results: how a solution's return value leaves the sandbox and how the evaluator
compares it with the expected output, as the official harness (``lcb_runner``) compares them.

The official harness calls the method in its own process and compares with ``prediction ==
expected`` (a top-level tuple first turned into a list), where ``expected`` is the JSON output
decoded: ``Decimal('2.5') == 2.5``, ``Fraction(5, 2) == 2.5``, ``True == 1`` and
``np.float32(0.1) == 0.1`` hold; a nested tuple is not a list, a dict with int keys is not the
JSON's dict (whose keys are strings), and a numpy array of more than one element makes ``==`` an
array whose truth value raises (a runtime error there).

Ours never runs the candidate's objects in the evaluator. Inside the sandbox the driver turns the
result into *exact plain data* (``ENCODER``): JSON for None, bool, int, float, str and lists, and
a tagged JSON object ``{"t": tag, "v": payload}`` for everything JSON would blur (tuples, dicts,
sets, Decimal, Fraction, complex, numpy arrays and scalars) or cannot hold (any other object:
``"?"``, which equals nothing). The evaluator rebuilds those as the standard-library (or numpy)
values they were, from text and numbers only, and applies the official comparison to them.

Cost: decoding is linear in the result's text and capped. An integer of up to 4300 digits
(Python's own limit for int/str conversion) converts directly; longer ones only as far as the
expected output holds integers that long (more cannot all be equal to it), by halving (not
Python's quadratic conversion, nor ``Decimal``'s: ~85 ms per 50,000 digits); a longer result is a
wrong answer, never the evaluator's time.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

# What the programs may print (the official prelude's int/str limit), decoded here too.
MAX_INT_DIGITS = 50000
# Integers this long convert with int() directly: Python's default int/str limit, where its
# quadratic conversion still costs ~0.1 ms.
_DIRECT_DIGITS = 4300

# Runs inside the sandbox, in the driver (thinktune.grading.verdicts): the candidate's result as
# exact plain data. A list of plain scalars is passed through whole (json.dumps writes it in C).
ENCODER = """\
    def encode(value, depth=0):
        kind = type(value)
        if value is None or kind is bool or kind is int or kind is str or kind is float:
            return value
        if depth > 1000:
            return {"t": "?", "v": "nested more than 1000 levels"}
        if kind.__module__ == "numpy":
            return encode_numpy(value)
        if kind is list:
            if plain.issuperset(map(type, value)):
                return value
            return [encode(item, depth + 1) for item in value]
        if isinstance(value, int):
            return int(value)
        if isinstance(value, str):
            return str(value)
        if isinstance(value, float):
            return float(value)
        if isinstance(value, list):
            return [encode(item, depth + 1) for item in value]
        if isinstance(value, tuple):
            return {"t": "t", "v": [encode(item, depth + 1) for item in value]}
        if isinstance(value, dict):
            return {"t": "d", "v": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
        if isinstance(value, (set, frozenset)):
            tag = "s" if isinstance(value, set) else "fs"
            return {"t": tag, "v": [encode(item, depth + 1) for item in value]}
        if isinstance(value, decimal.Decimal):
            return {"t": "D", "v": str(value)}
        if isinstance(value, fractions.Fraction):
            return {"t": "F", "v": [value.numerator, value.denominator]}
        if isinstance(value, complex):
            return {"t": "c", "v": [value.real, value.imag]}
        return {"t": "?", "v": kind.__qualname__}

    def encode_numpy(value):
        kind = value.dtype.kind if hasattr(value, "dtype") else ""
        if kind not in ("b", "i", "u", "f", "c", "U") or (kind == "f" and value.dtype.itemsize > 8):
            return {"t": "?", "v": type(value).__qualname__}
        if kind == "c":
            flat = [[item.real, item.imag] for item in value.ravel().tolist()]
        else:
            flat = value.ravel().tolist()
        tag = "nps" if any(base.__name__ == "generic" for base in type(value).__mro__) else "np"
        return {"t": tag, "v": [value.dtype.name if kind != "U" else "str", list(value.shape), flat]}

    plain = {int, str, float, bool, type(None)}
"""

# The numpy dtypes a result may rebuild: fixed-size numbers (strings are rebuilt from their text).
_NUMPY_DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                           "float16", "float32", "float64", "complex64", "complex128", "str"})


class UnreadableResult(ValueError):
    """The result's text is not what the driver writes, or holds more than may be decoded."""


class _Opaque:
    """An object of a type that does not cross: equal to nothing (the official harness would
    call its own ``__eq__``, a known difference)."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<{self.type_name} object>"


class _IntReader:
    """JSON integers: up to ``_DIRECT_DIGITS`` digits each at once; longer ones (up to
    MAX_INT_DIGITS) while ``budget`` digits remain (None: no budget, for trusted text).
    ``long_digits`` counts the digits of the longer ones read."""

    def __init__(self, budget: int | None) -> None:
        self.budget = budget
        self.long_digits = 0

    def __call__(self, text: str) -> int:
        digits = len(text) - text.startswith("-")
        if digits <= _DIRECT_DIGITS:
            return int(text)
        if digits > MAX_INT_DIGITS:
            raise UnreadableResult(f"an integer of more than {MAX_INT_DIGITS} digits")
        self.long_digits += digits
        if self.budget is not None and self.long_digits > self.budget:
            raise UnreadableResult(f"integers of more than {_DIRECT_DIGITS} digits beyond those of the expected output "
                                   "(they cannot all equal it)")
        negative = text.startswith("-")
        value = _digits_to_int(text[1:] if negative else text)
        return -value if negative else value


def _digits_to_int(digits: str) -> int:
    """A decimal digit string of any length, by halving: Karatsuba products instead of
    the quadratic conversion int() does above Python's limit."""
    if len(digits) <= _DIRECT_DIGITS:
        return int(digits)
    low = len(digits) // 2
    return _digits_to_int(digits[:-low]) * 10 ** low + _digits_to_int(digits[-low:])


def decode_json(text: str) -> Any:
    """Trusted JSON (a test's arguments or expected output) with integers of up to
    MAX_INT_DIGITS digits, whatever this process's int/str limit (Python's default, 4300).
    Raises ValueError (not JSON, a longer integer) or RecursionError (nested deeper than
    this process's recursion limit, ~1000 levels)."""
    try:
        return json.loads(text)  # integers in C, up to Python's limit
    except ValueError:
        return json.loads(text, parse_int=_IntReader(None))  # longer ones (or the same error again)


def long_int_digits(text: str) -> int:
    """How many digits the integers of more than 4300 digits in trusted JSON ``text`` hold:
    a result may hold as many (and no more) before it is known not to equal it."""
    reader = _IntReader(None)
    json.loads(text, parse_int=reader)
    return reader.long_digits


def decode_result(text: str, long_digit_budget: int) -> Any:
    """The result the driver wrote (``ENCODER``), rebuilt. Raises UnreadableResult (not the
    driver's encoding, integers too long) or RecursionError (nested more than ~1000 levels).
    Integers are read in C where they fit Python's limit; a text with a longer one is read
    again, each integer by ``_IntReader`` (at most twice the work, and the budget stops it)."""
    try:
        try:
            return json.loads(text, object_pairs_hook=_tagged)
        except UnreadableResult:
            raise
        except ValueError:
            return json.loads(text, parse_int=_IntReader(long_digit_budget), object_pairs_hook=_tagged)
    except UnreadableResult:
        raise
    except (ValueError, TypeError, InvalidOperation, ZeroDivisionError, OverflowError) as exc:
        raise UnreadableResult(f"not a result the driver writes: {type(exc).__name__}") from None


def _tagged(pairs: list[tuple[str, Any]]) -> Any:
    fields = dict(pairs)
    if fields.keys() != {"t", "v"}:
        raise UnreadableResult("an object that is not a tagged value")
    tag, value = fields["t"], fields["v"]
    if tag == "t":
        return tuple(_items(value))
    if tag == "d":
        return {key: item for key, item in (_pair(entry) for entry in _items(value))}
    if tag == "s":
        return set(_items(value))
    if tag == "fs":
        return frozenset(_items(value))
    if tag == "D" and type(value) is str:
        return Decimal(value)
    if tag == "F":
        numerator, denominator = _pair(value)
        if type(numerator) is not int or type(denominator) is not int:
            raise UnreadableResult("a fraction of non-integers")
        return Fraction(numerator, denominator)
    if tag == "c":
        real, imag = _pair(value)
        return complex(_number(real), _number(imag))
    if tag in ("np", "nps"):
        return _numpy(tag == "nps", value)
    if tag == "?" and type(value) is str:
        return _Opaque(value[:200])
    raise UnreadableResult(f"an unknown tag {str(tag)[:20]!r}")


def _items(value: Any) -> list:
    if type(value) is not list:
        raise UnreadableResult("a tagged container without a list")
    return value


def _pair(value: Any) -> tuple[Any, Any]:
    if type(value) is not list or len(value) != 2:
        raise UnreadableResult("a pair that is not two values")
    return value[0], value[1]


def _number(value: Any) -> float | int:
    if type(value) not in (int, float):
        raise UnreadableResult("a number that is not one")
    return value


def _numpy(scalar: bool, value: Any) -> Any:
    """A numpy array or scalar from its dtype name, shape and flat elements: memory as the
    elements' text, never more (the shape must hold exactly as many)."""
    if type(value) is not list or len(value) != 3:
        raise UnreadableResult("a numpy value without dtype, shape and elements")
    dtype, shape, flat = value
    if dtype not in _NUMPY_DTYPES or type(shape) is not list or type(flat) is not list or len(shape) > 32:
        raise UnreadableResult("a numpy value of another dtype or shape")
    size = 1
    for dimension in shape:
        if type(dimension) is not int or dimension < 0:
            raise UnreadableResult("a numpy shape that is not one")
        size *= dimension
    if size != len(flat) or (scalar and shape):
        raise UnreadableResult("a numpy shape that does not hold its elements")
    if dtype.startswith("complex"):
        flat = [complex(_number(re), _number(im)) for re, im in map(_pair, flat)]
    elif dtype == "str":
        if any(type(item) is not str for item in flat):
            raise UnreadableResult("a numpy string array of non-strings")
    elif any(type(item) not in (int, float, bool) for item in flat):
        raise UnreadableResult("a numpy number array of non-numbers")
    import numpy  # only where a result holds numpy values: the evaluator loads it once

    array = numpy.array(flat, dtype=str if dtype == "str" else dtype).reshape(shape)
    return array[()] if scalar else array


def compare(result: Any, expected: Any) -> tuple[bool | None, str]:
    """The official comparison: (True, "") equal; (False, why) not equal; (None, why) where the
    comparison itself raises (a runtime error in the official harness: a numpy array of more
    than one element, or of none)."""
    if isinstance(result, tuple):  # the official harness's one leniency: a tuple is a list
        result = list(result)
    try:
        return bool(result == expected), ""
    except RecursionError:
        return False, "the result is nested too deeply to be compared (more than ~1000 levels)"
    except Exception as exc:  # noqa: BLE001 - numpy's truth value of an array, as the official harness meets it
        return None, f"comparing the result raised {type(exc).__name__}: {exc}"
