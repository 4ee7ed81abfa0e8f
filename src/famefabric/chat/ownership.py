"""Who may see which conversation (README "Security", docs/PROTOCOL.md §17.5).

A conversation belongs to the subject that started it, as the sentinel
stamped it on the request (:func:`famefabric.agent.caller.current_caller`).
The owner is part of the conversation's stored key::

    <subject> U+001F <conversation id>

so each subject has a namespace of its own: the id ``c1`` of alice and the
id ``c1`` of bob are two conversations, and anything a subject asks about
another's id, including starting a conversation with it, is answered
exactly as for an id nobody uses. There is no way to learn that another
subject's conversation exists.

- an authenticated caller reaches only keys under its own subject, and lists
  only those (shown without the prefix);
- an administrator (``fame_admin``) lists every stored key and reaches any
  of them by its full key; a plain id is first its own conversation, else a
  stored key as is (rows from before ownership, which have no owner, are
  thus readable by administrators only);
- in open mode (no admission, anonymous caller) keys are the ids, as
  before: everyone sees everything.

Ids sent by authenticated callers may not contain U+001F.
"""

from __future__ import annotations

from dataclasses import dataclass

from famefabric.agent.caller import Caller

SEPARATOR = "\x1f"


@dataclass(frozen=True, slots=True)
class Scope:
    """The conversations one caller can reach."""

    caller: Caller

    @property
    def sees_everything(self) -> bool:
        """Open mode (anonymous) or an administrator."""
        return not self.caller.is_authenticated or self.caller.admin

    @property
    def prefix(self) -> str | None:
        """The key prefix of the caller's own conversations; None when anonymous."""
        subject = self.caller.subject
        return None if subject is None else subject + SEPARATOR

    def own_key(self, conversation_id: str) -> str | None:
        """The stored key of ``conversation_id`` started by this caller.

        None when an authenticated caller sent an id holding the separator:
        such an id names nothing the caller may start or reach.
        """
        prefix = self.prefix
        if prefix is None:
            return conversation_id
        if SEPARATOR in conversation_id:
            return None
        return prefix + conversation_id

    def candidate_keys(self, conversation_id: str) -> list[str]:
        """The stored keys ``conversation_id`` may name for this caller, in order of preference."""
        own = self.own_key(conversation_id)
        if self.caller.admin and own is not None:
            return [own, conversation_id]
        if self.caller.admin:
            return [conversation_id]
        return [] if own is None else [own]

    def checked_part(self, conversation_id: str) -> str:
        """The part of an id that the id rules apply to: an admin's full key is checked after its owner."""
        if self.caller.admin and SEPARATOR in conversation_id:
            return conversation_id.partition(SEPARATOR)[2]
        return conversation_id

    def list_prefix(self) -> str | None:
        """The prefix to list with; None lists every key."""
        return None if self.sees_everything else self.prefix

    def shown_id(self, key: str) -> str:
        """The id the caller knows a stored key by."""
        prefix = self.prefix
        if prefix is not None and key.startswith(prefix):
            return key[len(prefix) :]
        return key

    def owner_of(self, key: str) -> str | None:
        """The subject a stored key belongs to; None for a key without owner."""
        subject, separator, _ = key.partition(SEPARATOR)
        return subject if separator else None
