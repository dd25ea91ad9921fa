"""Errors that mean the user must change something, not that Leitstand is broken.

A ``UserError`` is printed by the CLI as one line (what is wrong and how to fix
it) with a non-zero exit code, never as a traceback. Raise it only where the
message can name the fix.
"""


class UserError(Exception):
    """A mistake or a missing prerequisite on the user's side; ``str()`` is the whole message."""

    exit_code = 2
