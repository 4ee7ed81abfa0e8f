"""How the chat client reads an agent's refusal of an argument: from code and data only."""

from __future__ import annotations

import pytest

from famefabric.chat.client import may_reject_argument
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
        # The reference: any exception of the call, a TypeError included, as
        # -32603 with no data. Ours always send data with -32603.
        (RemoteError(-32603, "stream_turn() got an unexpected keyword argument 'x'"), True),
        (RemoteError(-32603, "turn_id store is down", {"error_id": "e1"}), False),
        (RemoteError(-32603, "turn_id", {"code": "llm_auth"}), False),
        # Any other code, whatever the message says.
        (RemoteError(-32000, "turn_id rejected"), False),
        (RemoteError(-32601, "Method not found", "turn_id"), False),
    ],
)
def test_a_possible_argument_refusal_is_read_from_code_and_data(
    error: RemoteError, refused: bool
) -> None:
    assert may_reject_argument(error, "turn_id") is refused
