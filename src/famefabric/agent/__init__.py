"""The agent SDK: agents, operations, proxies and the A2A task types."""

from famefabric.agent.a2a import (
    Artifact,
    DataPart,
    FilePart,
    Message,
    Task,
    TaskArtifactUpdateEvent,
    TaskIdParams,
    TaskQueryParams,
    TaskSendParams,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
    TextPart,
    first_data_part,
    first_text_part,
    make_task,
    make_task_params,
)
from famefabric.agent.base import Agent, BaseAgent
from famefabric.agent.caller import Caller, current_caller
from famefabric.agent.operations import operation
from famefabric.agent.proxy import RemoteAgent, RemoteCall
from famefabric.agent.server import AgentServer

__all__ = [
    "Agent",
    "AgentServer",
    "Artifact",
    "BaseAgent",
    "Caller",
    "DataPart",
    "FilePart",
    "Message",
    "RemoteAgent",
    "RemoteCall",
    "Task",
    "TaskArtifactUpdateEvent",
    "TaskIdParams",
    "TaskQueryParams",
    "TaskSendParams",
    "TaskState",
    "TaskStatus",
    "TaskStatusUpdateEvent",
    "TextPart",
    "current_caller",
    "first_data_part",
    "first_text_part",
    "make_task",
    "make_task_params",
    "operation",
]
