"""Errors that mean "the user's input is wrong", as opposed to a bug.

The CLI turns a :class:`UserError` into one clear line on stderr and exit code 2;
anything else is a bug and keeps its traceback (``--debug`` shows it for both).
"""


class UserError(Exception):
    """Bad input or a missing prerequisite the user can fix; carries a fix-it message."""

    exit_code = 2


def report_errors(prog: str, run, interrupted: str) -> int:
    """Run ``run()`` (a script's body, returning its exit code) the way the CLI runs a command:
    a :class:`UserError` becomes one ``PROG: error:`` line (exit 2), Ctrl-C one line saying
    ``interrupted`` (what was kept), exit 130."""
    import sys

    try:
        return run()
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; {interrupted}", file=sys.stderr)
        return 130
