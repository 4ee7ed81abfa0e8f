"""famefabric: an agent message fabric and a stateful LLM chat agent.

Layers, each importing only from those before it::

    protocol -> routing -> transport -> node, sentinel -> agent (SDK) -> fabric -> chat (app)
"""

from famefabric.agent import (
    Agent,
    Artifact,
    BaseAgent,
    DataPart,
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
    operation,
)
from famefabric.errors import (
    AttachRefused,
    ConfigurationError,
    ConnectionClosed,
    DefinitionError,
    FabricError,
    NoRoute,
    OperationError,
    OperationTimeout,
    ProtocolError,
    RemoteError,
    StreamOverflow,
)
from famefabric.fabric import FameFabric, aserve, current_fabric, serve
from famefabric.sentinel import Sentinel, run_sentinel, serve_sentinel

__all__ = [
    "Agent",
    "Artifact",
    "AttachRefused",
    "BaseAgent",
    "ConfigurationError",
    "ConnectionClosed",
    "DataPart",
    "DefinitionError",
    "FabricError",
    "FameFabric",
    "Message",
    "NoRoute",
    "OperationError",
    "OperationTimeout",
    "ProtocolError",
    "RemoteError",
    "Sentinel",
    "StreamOverflow",
    "Task",
    "TaskArtifactUpdateEvent",
    "TaskIdParams",
    "TaskQueryParams",
    "TaskSendParams",
    "TaskState",
    "TaskStatus",
    "TaskStatusUpdateEvent",
    "TextPart",
    "aserve",
    "current_fabric",
    "first_data_part",
    "first_text_part",
    "make_task",
    "make_task_params",
    "operation",
    "run_sentinel",
    "serve",
    "serve_sentinel",
]
