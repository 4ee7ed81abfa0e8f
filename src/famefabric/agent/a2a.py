"""A2A task types with the wire shapes of PROTOCOL.md §11.1.

Python attributes are snake_case; the wire keys are camelCase aliases
(``session_id`` is ``sessionId``). Results are written with explicit nulls,
as peers expect (§10.2); missing optional keys are accepted on input.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer
from pydantic.alias_generators import to_camel

from famefabric.clock import format_timestamp
from famefabric.errors import JSONValue

TERMINAL_STATES = frozenset({"completed", "canceled", "failed"})


class _Wire(BaseModel):
    # Schemas are built on first use, not at import: most processes use a few of these types.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", defer_build=True
    )

    def to_wire(self) -> dict[str, Any]:
        """Return the wire object, camelCase keys, explicit nulls kept."""
        return self.model_dump(mode="json", by_alias=True)


class TaskState(StrEnum):
    """Lifecycle state of a task."""

    SUBMITTED = "submitted"
    WORKING = "working"
    INPUT_REQUIRED = "input-required"
    COMPLETED = "completed"
    CANCELED = "canceled"
    FAILED = "failed"
    UNKNOWN = "unknown"


class TextPart(_Wire):
    """A text part of a message or artifact."""

    type: Literal["text"] = "text"
    text: str
    metadata: dict[str, Any] | None = None


class FileContent(_Wire):
    """A file carried inline (base64 ``bytes``) or by ``uri``."""

    name: str | None = None
    mime_type: str | None = None
    bytes: str | None = None
    uri: str | None = None


class FilePart(_Wire):
    """A file part."""

    type: Literal["file"] = "file"
    file: FileContent
    metadata: dict[str, Any] | None = None


class DataPart(_Wire):
    """A structured-data part; ``data`` is always an object."""

    type: Literal["data"] = "data"
    data: dict[str, Any]
    metadata: dict[str, Any] | None = None


Part = Annotated[TextPart | FilePart | DataPart, Field(discriminator="type")]


class Message(_Wire):
    """A message made of parts."""

    role: Literal["user", "agent"] = "agent"
    parts: list[Part]
    metadata: dict[str, Any] | None = None


class TaskStatus(_Wire):
    """The state of a task at a moment, with an optional message."""

    state: TaskState
    message: Message | None = None
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_serializer("timestamp")
    def _write_timestamp(self, value: datetime) -> str:
        return format_timestamp(value)


class Artifact(_Wire):
    """An output of a task."""

    name: str | None = None
    description: str | None = None
    parts: list[Part]
    metadata: dict[str, Any] | None = None
    index: int = 0
    append: bool | None = None
    last_chunk: bool | None = None


class Task(_Wire):
    """A task as returned by ``tasks/send``, ``tasks/get`` and ``tasks/cancel``."""

    id: str
    session_id: str | None = None
    status: TaskStatus
    artifacts: list[Artifact] | None = None
    history: list[Message] | None = None
    metadata: dict[str, Any] | None = None


class TaskStatusUpdateEvent(_Wire):
    """A status change in a task subscription stream."""

    id: str
    status: TaskStatus
    final: bool = False
    metadata: dict[str, Any] | None = None


class TaskArtifactUpdateEvent(_Wire):
    """An artifact produced while a subscribed task runs."""

    id: str
    artifact: Artifact
    metadata: dict[str, Any] | None = None


class PushNotificationConfig(_Wire):
    """Where a task's updates would be pushed (not supported by our agents)."""

    url: str
    token: str | None = None
    authentication: dict[str, Any] | None = None


class TaskSendParams(_Wire):
    """Parameters of ``tasks/send`` and ``tasks/sendSubscribe``."""

    id: str
    session_id: str | None = None
    message: Message
    accepted_output_modes: list[str] | None = None
    push_notification: PushNotificationConfig | None = None
    history_length: int | None = None
    metadata: dict[str, Any] | None = None


class TaskQueryParams(_Wire):
    """Parameters of ``tasks/get``."""

    id: str
    metadata: dict[str, Any] | None = None
    history_length: int | None = None


class TaskIdParams(_Wire):
    """Parameters of ``tasks/cancel`` and ``tasks/sendUnsubscribe``."""

    id: str
    metadata: dict[str, Any] | None = None


class TaskPushNotificationConfig(_Wire):
    """Parameters of ``tasks/pushNotification/set``."""

    id: str
    push_notification_config: PushNotificationConfig


TaskEvent = TaskStatusUpdateEvent | TaskArtifactUpdateEvent


def is_terminal(state: TaskState | str) -> bool:
    """Tell whether a task in ``state`` has finished."""
    return str(state) in TERMINAL_STATES


def make_part(payload: JSONValue) -> TextPart | DataPart:
    """Wrap a payload: text becomes a TextPart, an object a DataPart."""
    if isinstance(payload, str):
        return TextPart(text=payload)
    if isinstance(payload, dict):
        return DataPart(data=payload)
    return DataPart(data={"value": payload})


def make_message(payload: JSONValue, *, role: Literal["user", "agent"] = "agent") -> Message:
    """Return a one-part message carrying ``payload``."""
    return Message(role=role, parts=[make_part(payload)])


def make_task(
    *,
    id: str,
    state: TaskState = TaskState.COMPLETED,
    payload: JSONValue = None,
    session_id: str | None = None,
    artifacts: list[Artifact] | None = None,
) -> Task:
    """Build a task whose status message carries ``payload`` (empty text when None)."""
    message = make_message("" if payload is None else payload)
    return Task(
        id=id,
        session_id=session_id,
        status=TaskStatus(state=state, message=message),
        artifacts=artifacts,
    )


def make_task_params(
    *,
    id: str,
    payload: JSONValue = None,
    session_id: str | None = None,
    history_length: int | None = None,
    role: Literal["user", "agent"] = "agent",
    metadata: dict[str, Any] | None = None,
) -> TaskSendParams:
    """Build ``tasks/send`` parameters; the session id defaults to the task id."""
    return TaskSendParams(
        id=id,
        session_id=session_id or id,
        message=make_message("" if payload is None else payload, role=role),
        history_length=history_length,
        metadata=metadata,
    )


def first_data_part(message: Message | None) -> dict[str, Any] | None:
    """Return the data of the first DataPart of ``message``, if any."""
    for part in message.parts if message else ():
        if isinstance(part, DataPart):
            return part.data
    return None


def first_text_part(message: Message | None) -> str | None:
    """Return the text of the first TextPart of ``message``, if any."""
    for part in message.parts if message else ():
        if isinstance(part, TextPart):
            return part.text
    return None
