"""``ChatAgent``: a stateful conversation agent in front of an LLM.

A conversation starts with ``start_task`` (A2A ``tasks/send``) and lives in a
:class:`~famefabric.chat.store.ConversationStore`. Each turn loads the state,
asks the model with ``[system] + history + [user]``, and commits the user
message and the reply together with a version check, so that a failed or
abandoned turn leaves the history as it was.

Turns of one conversation run one at a time in arrival order: a FIFO lock in
this process, and a lease in the store across replicas (the version check
stays the guarantee). Different conversations run concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager, suppress
from typing import Any

from famefabric.agent import a2a
from famefabric.agent.caller import current_caller
from famefabric.agent.operations import operation
from famefabric.chat import telemetry
from famefabric.chat.completion import StatelessCompletion
from famefabric.chat.conversation import (
    DEFAULT_MAX_HISTORY_LENGTH,
    DEFAULT_SYSTEM_PROMPT,
    ConversationState,
    conversation_to_json,
)
from famefabric.chat.limits import ChatInputError, ChatInputLimits, conversation_id
from famefabric.chat.metadata import metadata, seeded_history
from famefabric.chat.model import ChatModel
from famefabric.chat.ownership import Scope
from famefabric.chat.store import (
    ConversationExists,
    ConversationNotFound,
    ConversationStore,
    StoreUnavailable,
    VersionConflict,
)
from famefabric.chat.stores import MemoryConversationStore
from famefabric.chat.usage import TokenUsage, metering
from famefabric.errors import OperationError
from famefabric.observability.logs import conversation
from famefabric.protocol import jsonrpc
from famefabric.protocol.ids import new_id

log = logging.getLogger(__name__)

LEASE_TTL = 6.0
LEASE_RENEW_EVERY = 2.0
LEASE_WAIT = 60.0
SWEEP_EVERY = 60.0


def _error(message: str, code: str, rpc_code: int = jsonrpc.APPLICATION_ERROR) -> OperationError:
    return OperationError(message, code=rpc_code, data={"code": code})


def _invalid(exc: ChatInputError) -> OperationError:
    return _error(str(exc), "invalid_params", jsonrpc.INVALID_PARAMS)


def _checked_id(value: object) -> str:
    try:
        return conversation_id(value)
    except ChatInputError as exc:
        raise _invalid(exc) from None


class _FifoLocks:
    """One FIFO lock per key, forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class ChatAgent(StatelessCompletion):
    """The chat agent served at ``chat@fame.fabric``.

    Besides conversations it answers stateless completions
    (:class:`~famefabric.chat.completion.StatelessCompletion`).

    Args:
        model: the LLM behind the agent.
        store: where conversations live (default: in this process's memory).
        max_message_chars: the longest user message accepted.
        system_prompt: used when a conversation starts without one.
        max_history_length: exchanges kept when a conversation does not say.
        replica_id: this process's name in store leases (default: random).
        leases: take a store lease around each turn, so that replicas sharing
            the store take turns; by default on for every store but the
            in-memory one, which no other process can see.
        clock: seconds since the epoch; injectable for tests.
        input_limits: bounds on what callers send (:mod:`famefabric.chat.limits`).
    """

    def __init__(
        self,
        *,
        model: ChatModel,
        store: ConversationStore | None = None,
        max_message_chars: int = 32_000,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        max_history_length: int = DEFAULT_MAX_HISTORY_LENGTH,
        idle_ttl: float | None = None,
        replica_id: str | None = None,
        leases: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        input_limits: ChatInputLimits | None = None,
    ) -> None:
        super().__init__()
        self.input_limits = input_limits or ChatInputLimits()
        self.model = model
        self.store: ConversationStore = store or MemoryConversationStore()
        self.max_message_chars = max_message_chars
        self.system_prompt = system_prompt
        self.max_history_length = max_history_length
        self.idle_ttl = idle_ttl
        self.replica_id = replica_id or new_id()
        self._clock = clock
        self._locks = _FifoLocks()
        self._leases = (
            not isinstance(self.store, MemoryConversationStore) if leases is None else leases
        )
        self._last_sweep = clock()

    async def start_task(self, params: a2a.TaskSendParams) -> a2a.Task:
        """Start a conversation whose id is the task id.

        The first DataPart may carry ``system_prompt``, ``max_history_length``,
        ``metadata`` and a seeded ``history`` (chat/metadata.py); the window may
        also come from the A2A ``historyLength``, and the payload wins.
        """
        _checked_id(params.id)
        data = a2a.first_data_part(params.message) or {}
        limits = self.input_limits
        try:
            system_prompt = limits.system_prompt(data.get("system_prompt", ""))
            pairs = metadata(data.get("metadata"))
            seeded = seeded_history(data.get("history"), self.max_message_chars)
            if "max_history_length" in data:
                length = limits.history_length(data["max_history_length"])
            elif params.history_length is not None:
                length = limits.history_length(params.history_length)
            else:
                length = self.max_history_length
        except ChatInputError as exc:
            raise _invalid(exc) from None
        system_prompt = system_prompt or self.system_prompt
        await self._sweep()
        key = Scope(current_caller()).own_key(params.id)
        if key is None:
            raise _error(
                "a conversation id may not contain U+001F", "invalid_params", jsonrpc.INVALID_PARAMS
            )
        state = ConversationState(
            conversation_id=key,
            system_prompt=system_prompt,
            max_history_length=length,
            history=seeded,
            metadata=pairs,
        )
        try:
            await self.store.create(state)
        except ConversationExists:
            raise _error(
                f"conversation {params.id!r} already exists: continue it with run_turn, or start one with a new id",
                "conversation_exists",
                jsonrpc.INTERNAL_ERROR,
            ) from None
        except StoreUnavailable as exc:
            raise _error(str(exc), "store_unavailable") from exc
        log.info("conversation %s started (window %d exchanges)", params.id, length)
        return a2a.make_task(
            id=params.id,
            state=a2a.TaskState.WORKING,
            payload="",
            session_id=params.session_id or params.id,
        )

    async def get_task_status(self, params: a2a.TaskQueryParams) -> a2a.Task:
        """Answer ``tasks/get``: a live conversation is a ``working`` task."""
        await self._load(await self._key(params.id), params.id)
        return a2a.make_task(
            id=params.id, state=a2a.TaskState.WORKING, payload="", session_id=params.id
        )

    async def cancel_task(self, params: a2a.TaskIdParams) -> a2a.Task:
        """Answer ``tasks/cancel`` by ending the conversation."""
        await self.end_conversation(params.id)
        return a2a.make_task(
            id=params.id, state=a2a.TaskState.CANCELED, payload="", session_id=params.id
        )

    @operation
    async def run_turn(
        self, conversation_id: str, user_message: str, turn_id: str | None = None
    ) -> str:
        """Answer one user message; returns the assistant's reply.

        An empty message asks the assistant to speak without new input. With
        a ``turn_id`` that was already answered, the stored reply is returned
        without asking the model again.
        """
        self._check_message(user_message)
        key = await self._key(conversation_id)
        with conversation(conversation_id):
            async with telemetry.turn("unary"), self._turn(key, conversation_id) as state:
                if turn_id is not None:
                    stored = await self.store.find_turn(state.conversation_id, turn_id)
                    if stored is not None:
                        return stored
                with metering() as meter:
                    reply = await self.model.complete(state.request_messages(user_message))
                await self._commit(state, user_message, reply, turn_id, meter.usage)
                return reply

    @operation
    async def stream_turn(
        self, conversation_id: str, user_message: str, turn_id: str | None = None
    ) -> AsyncIterator[str]:
        """Answer one user message, yielding the reply's text as the model writes it.

        The whole reply is committed once the model finishes; a stream that
        fails or is abandoned leaves the history unchanged.
        """
        self._check_message(user_message)
        key = await self._key(conversation_id)
        async with telemetry.turn("stream"), self._turn(key, conversation_id) as state:
            if turn_id is not None:
                stored = await self.store.find_turn(state.conversation_id, turn_id)
                if stored is not None:
                    yield stored
                    return
            pieces: list[str] = []
            with metering() as meter:
                messages = state.request_messages(user_message)
                async with aclosing(self.model.stream(messages)) as stream:
                    async for piece in stream:
                        pieces.append(piece)
                        yield piece
            await self._commit(state, user_message, "".join(pieces), turn_id, meter.usage)

    @operation
    async def end_conversation(self, conversation_id: str) -> None:
        """Drop a conversation; ending an unknown one is harmless."""
        _checked_id(Scope(current_caller()).checked_part(conversation_id))
        try:
            key = await self._key(conversation_id)
            if key is not None and await self.store.delete(key):
                log.info("conversation %s ended", conversation_id)
        except StoreUnavailable as exc:
            raise _error(str(exc), "store_unavailable") from exc

    @operation
    async def get_conversation(self, conversation_id: str) -> dict[str, Any]:
        """Return a conversation's system prompt, window and history."""
        state = await self._load(await self._key(conversation_id), conversation_id)
        return {**conversation_to_json(state), "id": conversation_id}

    @operation
    async def list_conversations(self, limit: int = 100) -> list[str]:
        """Return the ids of the caller's conversations (an admin's: all), most recent first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise _error(
                "limit must be a whole number from 1 to 10000",
                "invalid_params",
                jsonrpc.INVALID_PARAMS,
            )
        scope = Scope(current_caller())
        try:
            keys = await self.store.list_ids(limit=limit, prefix=scope.list_prefix())
        except StoreUnavailable as exc:
            raise _error(str(exc), "store_unavailable") from exc
        return [scope.shown_id(key) for key in keys]

    async def _key(self, conversation_id: str) -> str | None:
        """The stored key ``conversation_id`` names for the caller (chat/ownership.py)."""
        candidates = Scope(current_caller()).candidate_keys(conversation_id)
        for key in candidates[:-1]:  # an admin's own conversation wins over a raw key
            try:
                if await self.store.load(key) is not None:
                    return key
            except StoreUnavailable as exc:
                raise _error(str(exc), "store_unavailable") from exc
        return candidates[-1] if candidates else None

    def _check_message(self, user_message: object) -> None:
        if not isinstance(user_message, str):
            raise _error(
                f"user_message must be a string, got {type(user_message).__name__}",
                "invalid_params",
                jsonrpc.INVALID_PARAMS,
            )
        if len(user_message) > self.max_message_chars:
            raise _error(
                f"message of {len(user_message)} characters is over the limit of {self.max_message_chars}: send a shorter one",
                "message_too_long",
                jsonrpc.INVALID_PARAMS,
            )

    async def _load(self, key: str | None, conversation_id: str) -> ConversationState:
        _checked_id(Scope(current_caller()).checked_part(conversation_id))
        try:
            state = (
                None
                if key is None
                else await telemetry.timed_store("load", lambda: self.store.load(key))
            )
        except StoreUnavailable as exc:
            raise _error(str(exc), "store_unavailable") from exc
        if state is None:
            raise _error(
                f"no conversation {conversation_id!r}: start one with start_task (tasks/send) using this id",
                "conversation_not_found",
                jsonrpc.INTERNAL_ERROR,
            )
        return state

    @asynccontextmanager
    async def _turn(
        self, key: str | None, conversation_id: str
    ) -> AsyncIterator[ConversationState]:
        _checked_id(Scope(current_caller()).checked_part(conversation_id))
        await self._sweep()
        if key is None:
            await self._load(None, conversation_id)  # raises: no such conversation
        assert key is not None
        async with self._locks.hold(key), self._lease(key):
            yield await self._load(key, conversation_id)

    @asynccontextmanager
    async def _lease(self, conversation_id: str) -> AsyncIterator[None]:
        if not self._leases:
            yield
            return
        try:
            deadline = self._clock() + LEASE_WAIT
            delay = 0.005
            while not await self.store.acquire_lease(conversation_id, self.replica_id, LEASE_TTL):
                if self._clock() > deadline:
                    raise _error(
                        f"conversation {conversation_id!r} is busy on another replica; try again shortly",
                        "conversation_busy",
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.2)
        except StoreUnavailable as exc:
            raise _error(str(exc), "store_unavailable") from exc
        # The renewer lives exactly as long as this block and is awaited on exit.
        # It stops on ``done``, not only on cancel: a store client may finish a
        # call whose task was cancelled as if nothing happened (redis-py does,
        # now and then), and a renewer that only cancel could stop would then
        # renew the lease, and hold this exit, forever.
        done = asyncio.Event()
        renewer = asyncio.ensure_future(self._renew(conversation_id, done))
        try:
            yield
        finally:
            done.set()
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            try:
                await self.store.release_lease(conversation_id, self.replica_id)
            except StoreUnavailable:
                log.warning(
                    "could not release the lease of %s; it expires by itself", conversation_id
                )

    async def _renew(self, conversation_id: str, done: asyncio.Event) -> None:
        while True:
            with suppress(TimeoutError):
                async with asyncio.timeout(LEASE_RENEW_EVERY):
                    await done.wait()
            if done.is_set():
                return
            try:
                await self.store.acquire_lease(conversation_id, self.replica_id, LEASE_TTL)
            except StoreUnavailable:
                log.warning("could not renew the lease of %s", conversation_id)

    async def _commit(
        self,
        state: ConversationState,
        user_message: str,
        reply: str,
        turn_id: str | None,
        usage: TokenUsage | None,
    ) -> None:
        try:
            await telemetry.timed_store(
                "commit_turn",
                lambda: self.store.commit_turn(
                    state.conversation_id,
                    expected_version=state.version,
                    user_message=user_message,
                    reply=reply,
                    turn_id=turn_id,
                    usage=usage,
                ),
            )
        except VersionConflict:
            raise _error(
                f"conversation {state.conversation_id!r} changed during the turn: send the message again",
                "conversation_changed",
            ) from None
        except ConversationNotFound:
            raise _error(
                f"conversation {state.conversation_id!r} ended during the turn; start a new one",
                "conversation_not_found",
                jsonrpc.INTERNAL_ERROR,
            ) from None
        except StoreUnavailable as exc:
            raise _error(str(exc), "store_unavailable") from exc

    async def _sweep(self) -> None:
        if self.idle_ttl is None or self._clock() - self._last_sweep < SWEEP_EVERY:
            return
        self._last_sweep = self._clock()
        try:
            dropped = await self.store.expire_idle(self.idle_ttl)
        except StoreUnavailable:
            return
        if dropped:
            log.info("dropped %d conversations idle for over %.0f s", dropped, self.idle_ttl)
