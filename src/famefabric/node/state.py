"""The node's connection state: one enum, one transition table.

::

                    start                attached              restored
        NEW ──────────────► CONNECTING ──────────► RESTORING ──────────► READY
         │                      │                   ▲     │                │
         │ close                │ failed    attached│     │ lost           │ lost
         ▼                      ▼                   │     ▼                │
       CLOSED ◄─────────────────┘              DISCONNECTED ◄──────────────┘
         ▲                                          │
         │ closed                                   │ give_up (no reconnect, delays
         │                                          ▼  ran out, or a final refusal)
      CLOSING ◄────────── close (from CONNECTING, RESTORING, READY,
                          DISCONNECTED and GAVE_UP)

* ``NEW``: built, not started; sends are refused ("not started").
* ``CONNECTING``: the first attach is in progress (``async with`` waits).
* ``RESTORING``: attached; the bindings are being re-sent and the backlog
  flushed. Application envelopes queue, so that they leave after the backlog.
* ``READY``: attached and restored; application envelopes go out directly.
* ``DISCONNECTED``: the connection was lost; the node is waiting to reconnect
  and envelopes queue (up to ``max_queued``).
* ``GAVE_UP``: the node stopped reconnecting for good; sends fail at once.
* ``CLOSING`` / ``CLOSED``: :meth:`~famefabric.node.Node.close` is running /
  has run; sends are refused ("closed").

A connection that is lost while the node is closing changes nothing: only the
current connection's loss is an event, and ``close`` wins over everything.
The table is the whole machine; :class:`LinkStateMachine` refuses any event
the table does not list for the current state, which is a bug in the caller.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType


class LinkState(enum.Enum):
    """Where the node's connection to the sentinel stands (see the module docstring)."""

    NEW = "new"
    CONNECTING = "connecting"
    RESTORING = "restoring"
    READY = "ready"
    DISCONNECTED = "disconnected"
    GAVE_UP = "gave up"
    CLOSING = "closing"
    CLOSED = "closed"


class LinkEvent(enum.Enum):
    """What happens to the connection."""

    START = "start"
    ATTACHED = "attached"
    RESTORED = "restored"
    LOST = "lost"
    FAILED = "failed"
    GIVE_UP = "give up"
    CLOSE = "close"
    CLOSED = "closed"


_S = LinkState
_E = LinkEvent

TRANSITIONS: Mapping[tuple[LinkState, LinkEvent], LinkState] = MappingProxyType(
    {
        (_S.NEW, _E.START): _S.CONNECTING,
        (_S.NEW, _E.CLOSE): _S.CLOSED,
        (_S.CONNECTING, _E.ATTACHED): _S.RESTORING,
        (_S.CONNECTING, _E.FAILED): _S.CLOSED,
        (_S.CONNECTING, _E.CLOSE): _S.CLOSING,
        (_S.RESTORING, _E.RESTORED): _S.READY,
        (_S.RESTORING, _E.LOST): _S.DISCONNECTED,
        (_S.RESTORING, _E.CLOSE): _S.CLOSING,
        (_S.READY, _E.LOST): _S.DISCONNECTED,
        (_S.READY, _E.CLOSE): _S.CLOSING,
        (_S.DISCONNECTED, _E.ATTACHED): _S.RESTORING,
        (_S.DISCONNECTED, _E.GIVE_UP): _S.GAVE_UP,
        (_S.DISCONNECTED, _E.CLOSE): _S.CLOSING,
        (_S.GAVE_UP, _E.CLOSE): _S.CLOSING,
        (_S.CLOSING, _E.CLOSED): _S.CLOSED,
    }
)
"""``(state, event) -> next state``; a pair that is not here is not allowed."""

RUNNING = frozenset({_S.CONNECTING, _S.RESTORING, _S.READY, _S.DISCONNECTED, _S.GAVE_UP})
"""States between a successful ``start`` and ``close``: tasks may be spawned."""

ATTACHED = frozenset({_S.RESTORING, _S.READY})
"""States with a live, attached connection."""


class LinkStateMachine:
    """Holds the current :class:`LinkState` and applies :data:`TRANSITIONS`."""

    __slots__ = ("state",)

    def __init__(self, state: LinkState = LinkState.NEW) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<LinkStateMachine {self.state.value}>"

    def fire(self, event: LinkEvent) -> LinkState:
        """Apply ``event``; return the new state.

        Raises:
            RuntimeError: the table has no transition for ``event`` in this
                state (a bug in the caller, never a network condition).
        """
        target = TRANSITIONS.get((self.state, event))
        if target is None:
            raise RuntimeError(f"link state {self.state.value!r} has no {event.value!r} transition")
        self.state = target
        return target

    def allows(self, event: LinkEvent) -> bool:
        """Tell whether ``event`` is a valid transition now."""
        return (self.state, event) in TRANSITIONS

    @property
    def is_running(self) -> bool:
        """Started and not closing: tasks may be spawned, envelopes sent or queued."""
        return self.state in RUNNING

    @property
    def is_attached(self) -> bool:
        """A live connection is attached (restoring or ready)."""
        return self.state in ATTACHED

    @property
    def is_ready(self) -> bool:
        """Application envelopes may go out directly."""
        return self.state is LinkState.READY

    @property
    def is_closed(self) -> bool:
        """``close`` has started or finished."""
        return self.state is LinkState.CLOSING or self.state is LinkState.CLOSED
