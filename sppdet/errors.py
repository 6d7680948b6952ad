"""Errors that mean "the user's input is wrong", as opposed to a bug.

The CLI turns a :class:`UserError` into one clear line on stderr and exit code 2;
anything else is a bug and keeps its traceback (``--debug`` shows it for both).
"""


class UserError(Exception):
    """Bad input or a missing prerequisite the user can fix; carries a fix-it message."""

    exit_code = 2
