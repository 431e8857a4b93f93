"""Errors perfsim raises on bad input: one line that names the field and what is accepted."""


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
