"""Errors perfsim raises on bad input: one line that names the field and what is accepted."""

import math
import numbers


class PerfsimError(Exception):
    """Base class: the message is a single line fit to show a user as is."""


class SpecError(PerfsimError):
    """A hardware, model or profile file is malformed or has an invalid field."""


class UnknownNameError(PerfsimError):
    """A name (hardware, model, dataset, dtype) is not known."""


class InvalidInputError(PerfsimError):
    """A request (batch, sequence, plan, option) is out of range or inconsistent."""


class DataError(PerfsimError):
    """A measured-data file is missing, corrupt or lacks the columns perfsim needs."""


def one_line(text: str) -> str:
    """Fold a message onto one line."""
    return " ".join(str(text).split())


def check_number(flag: str, value, what: str, low: float = 0.0, inclusive: bool = False,
                 high: float | None = None) -> float:
    """`value` as a float if it is a finite number above `low` (at or above it with `inclusive`) and at most
    `high`; else an InvalidInputError naming `flag` and the accepted range in `what` units."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) \
        and (value >= low if inclusive else value > low) and (high is None or value <= high)
    if not ok:
        upper = "" if high is None else f" and <= {high:g}"
        raise InvalidInputError(f"{flag}: must be a finite number {'>=' if inclusive else '>'} {low:g}{upper} "
                                f"{what}, got {value!r}")
    return float(value)


def check_int(flag: str, value, low: int = 1) -> int:
    """`value` as an int if it is a whole number (not a bool) >= `low`; else an InvalidInputError naming `flag`."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low
    if not ok:
        raise InvalidInputError(f"{flag}: must be an integer >= {low}, got {value!r}")
    return int(value)
