"""Who is calling: the identity the sentinel stamped on a request (docs/PROTOCOL.md, "Security").

When the sentinel admits nodes with tokens, it overwrites ``meta.subject``
(and sets ``meta.admin`` to ``true`` for administrators) on every request it
forwards, after removing whatever the sender put there; so an operation can
trust :func:`current_caller`. In open mode (no admission) the sentinel
removes both keys and ``subject`` is ``None``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SUBJECT_KEY = "subject"
ADMIN_KEY = "admin"


@dataclass(frozen=True, slots=True)
class Caller:
    """The caller of the operation being handled.

    Attributes:
        subject: the authenticated subject, or ``None`` when the fabric runs
            without admission (open mode) or the call is local.
        admin: whether the caller's token has ``fame_admin``.
    """

    subject: str | None = None
    admin: bool = False

    @property
    def is_authenticated(self) -> bool:
        """Tell whether a sentinel vouched for this caller."""
        return self.subject is not None


ANONYMOUS = Caller()

_current: contextvars.ContextVar[Caller] = contextvars.ContextVar(
    "famefabric_caller", default=ANONYMOUS
)


def current_caller() -> Caller:
    """Return the caller of the operation running in this task (``ANONYMOUS`` outside one)."""
    return _current.get()


def caller_from_meta(meta: Mapping[str, Any] | None) -> Caller:
    """Read the caller the sentinel stamped into a request's ``meta``."""
    if not meta:
        return ANONYMOUS
    subject = meta.get(SUBJECT_KEY)
    if type(subject) is not str or not subject:
        return ANONYMOUS
    return Caller(subject=subject, admin=meta.get(ADMIN_KEY) is True)


def set_caller(caller: Caller) -> contextvars.Token[Caller]:
    """Make ``caller`` current in this context; undo with :func:`reset_caller`."""
    return _current.set(caller)


def reset_caller(token: contextvars.Token[Caller]) -> None:
    """Restore the caller that was current before :func:`set_caller`."""
    _current.reset(token)
