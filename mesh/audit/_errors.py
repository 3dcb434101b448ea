"""The audit's errors, one base:

    AuditError
    ├── Unreadable        a stored message, file line or field that is no audit entry (names it)
    └── SigningKeyError   the checkpoint signing key is missing, malformed or readable by others

Appends that cannot be stored raise `mesh.errors.Unavailable` (with a retry-after) instead: the
caller's action must fail closed, and that is the error every surface already maps.
"""

from __future__ import annotations


class AuditError(Exception):
    """Base of the audit's own errors."""


class Unreadable(AuditError):
    """Not an audit entry; the message names the field (``seq: not a count``)."""


class SigningKeyError(AuditError):
    """The signing key cannot be used as it is."""
