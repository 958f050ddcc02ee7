"""The one error family of amc. The CLI turns these into a one-line message and an exit code."""


class AmcError(Exception):
    """A user-facing error: bad input, a missing tool, an exceeded budget."""

    exit_code = 1


class InputError(AmcError):
    """Bad input: a file, field or option the user gave is wrong."""

    exit_code = 2


class ToolMissingError(AmcError):
    """A required external tool or package is not installed; the message says what to install."""

    exit_code = 3


class BudgetError(AmcError):
    """A flash, RAM or patch budget is exceeded; the message names the budget and the need."""

    exit_code = 4


class LoweringError(AmcError):
    """A graph holds an operator the backend cannot lower; the message names the op and the graph."""

    exit_code = 5
