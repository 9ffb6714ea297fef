"""Errors that the user can fix.

A :class:`UserError` carries a one-line message that names the offending file
(or config field) and the fix. The command line prints it and exits with code 2;
any other exception is a bug and exits with code 1.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (file, config, arguments), not a bug."""


class Interrupted(Exception):
    """Work stopped by a signal (SIGINT: Ctrl-C, SIGTERM: a scheduler's pre-emption) after saving what it could.

    The command line exits with 128 + the signal number (130, 143) and says to rerun the same command.
    """

    def __init__(self, signum: int, what: str):
        super().__init__(what)
        self.signum = signum
