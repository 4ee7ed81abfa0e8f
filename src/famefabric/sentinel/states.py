"""The states of a child connection at the sentinel and the events between them (§5).

See :mod:`famefabric.sentinel.session` for the machine they describe.
"""

from __future__ import annotations

import enum


class SessionState(enum.Enum):
    """Where a child connection is in its life (see :mod:`famefabric.sentinel.session`)."""

    AWAITING_ATTACH = "awaiting attach"
    ATTACHED = "attached"
    REPLACED = "replaced"
    CLOSING = "closing"
    CLOSED = "closed"


class Event(enum.Enum):
    """What moves a session from one state to another."""

    ATTACH = "attach"
    REFUSE = "refuse"
    REPLACE = "replace"
    CLOSE = "close"
    LINK_CLOSED = "link closed"


_S = SessionState
TRANSITIONS: dict[tuple[SessionState, Event], SessionState] = {
    (_S.AWAITING_ATTACH, Event.ATTACH): _S.ATTACHED,
    (_S.AWAITING_ATTACH, Event.REFUSE): _S.CLOSING,
    (_S.ATTACHED, Event.ATTACH): _S.ATTACHED,
    (_S.ATTACHED, Event.REFUSE): _S.CLOSING,
    (_S.ATTACHED, Event.REPLACE): _S.REPLACED,
    (_S.AWAITING_ATTACH, Event.CLOSE): _S.CLOSING,
    (_S.ATTACHED, Event.CLOSE): _S.CLOSING,
    (_S.REPLACED, Event.CLOSE): _S.CLOSING,
    (_S.CLOSING, Event.CLOSE): _S.CLOSING,
    **{(state, Event.LINK_CLOSED): _S.CLOSED for state in SessionState},
}
"""Every allowed (state, event) pair and the state it leads to; others are errors."""
