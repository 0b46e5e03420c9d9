"""The one error type a user sees as a single readable line (no traceback)."""


class UserError(Exception):
    """A problem the user can fix: a bad flag, an unreachable service, a missing set-up step.

    The message names what to fix; the CLI prints it as one line and exits non-zero.
    """

    exit_code = 2
