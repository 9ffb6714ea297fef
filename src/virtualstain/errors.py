"""Errors that the user can fix.

A :class:`UserError` carries a one-line message that names the offending file
(or config field) and the fix. The command line prints it and exits with code 2;
any other exception is a bug and exits with code 1.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (file, config, arguments), not a bug."""
