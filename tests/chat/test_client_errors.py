"""How the chat client reads an agent's refusal of an argument: from code and data only."""

from __future__ import annotations

import pytest

from famefabric.chat.client import rejects_argument
from famefabric.errors import RemoteError


@pytest.mark.parametrize(
    ("error", "refused"),
    [
        # Ours: -32602 naming the arguments it does not take.
        (RemoteError(-32602, "invalid params", {"unexpected": ["turn_id"]}), True),
        (RemoteError(-32602, "invalid params", {"unexpected": ["other"]}), False),
        # An older agent of ours: -32602 without data.
        (RemoteError(-32602, "invalid params for ChatAgent.run_turn: ..."), True),
        # The chat agent's own refusals carry a code in data: not about the argument.
        (RemoteError(-32602, "turn_id is mentioned here", {"code": "message_too_long"}), False),
        # The reference: the call's TypeError as -32603 with its repr in data.
        (
            RemoteError(
                -32603,
                "run_turn() got an unexpected keyword argument 'turn_id'",
                "TypeError(\"run_turn() got an unexpected keyword argument 'turn_id'\")",
            ),
            True,
        ),
        # Any other failure, even one whose message says turn_id.
        (RemoteError(-32603, "turn_id store is down", "RuntimeError('turn_id')"), False),
        (RemoteError(-32000, "turn_id rejected"), False),
    ],
)
def test_an_argument_refusal_is_read_from_code_and_data(error: RemoteError, refused: bool) -> None:
    assert rejects_argument(error, "turn_id") is refused
