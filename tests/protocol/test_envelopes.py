"""Envelope builders: every envelope our code builds decodes as the frame it claims to be."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from famefabric.protocol import envelopes
from famefabric.protocol.codec import decode
from famefabric.protocol.frames import (
    FLOW_ACK,
    FLOW_RESET,
    RTYPE_ACK,
    RTYPE_REPLY,
    RTYPE_STREAM,
    CreditUpdate,
    Data,
    DeliveryAck,
    NodeHeartbeat,
    NodeHeartbeatAck,
)

TS = "2026-12-06T00:00:00.000Z"


def roundtrip(wire: dict[str, Any]) -> Any:
    return decode(orjson.dumps(wire))


def test_a_request_carries_the_json_rpc_id_as_corr_id_and_meta_when_given() -> None:
    wire = envelopes.request(
        envelope_id="e1",
        call_id="c1",
        to="echo@fame.fabric",
        method="echo",
        params={"args": [1], "kwargs": {}},
        rtype=RTYPE_REPLY,
        ts=TS,
        meta={"affinity": "a"},
    )
    envelope = roundtrip(wire)
    assert isinstance(envelope.frame, Data)
    assert envelope.frame.payload["id"] == envelope.corr_id == "c1"
    assert envelope.meta == {"affinity": "a"}
    assert "meta" not in envelopes.request(
        envelope_id="e", call_id="c", to="a@b", method="m", params=None, rtype=2, ts=TS
    )


def test_a_nack_is_a_negative_delivery_ack_with_the_reset_flag() -> None:
    wire = envelopes.nack(
        to="__rpc__x@/s/n", corr_id="c", ref_id="r", code="FORBIDDEN", reason="no", ts=TS, sid="S"
    )
    envelope = roundtrip(wire)
    assert isinstance(envelope.frame, DeliveryAck)
    assert (envelope.frame.ok, envelope.frame.code, envelope.frame.ref_id) == (
        False,
        "FORBIDDEN",
        "r",
    )
    assert envelope.flow_flags == FLOW_RESET and envelope.sid == "S"
    notice = roundtrip(envelopes.cancel_notice(to="a@b", call_id="c", envelope_id="e", ts=TS))
    assert notice.frame.code == envelopes.CANCELLED and notice.frame.ref_id == "e"


def test_reply_ack_heartbeat_and_credit_update_decode() -> None:
    reply = roundtrip(
        envelopes.reply(to="a@/s/n", corr_id="c", trace_id="t", payload={"id": "c"}, ts=TS)
    )
    assert isinstance(reply.frame, Data) and reply.trace_id == "t"
    ack = roundtrip(envelopes.delivery_ack(to="a@b", corr_id="c", trace_id=None, ref_id="r", ts=TS))
    assert isinstance(ack.frame, DeliveryAck) and ack.frame.ok and ack.trace_id
    assert isinstance(roundtrip(envelopes.heartbeat(ts=TS)).frame, NodeHeartbeat)
    credit = roundtrip(envelopes.credit_update("f", ts=TS))
    assert credit.frame == CreditUpdate(flow_id="f", credits=32)
    assert (credit.flow_id, credit.seq_id, credit.flow_flags) == ("f", 0, FLOW_ACK)


def test_a_control_request_and_its_answer_echo_trace_and_correlation() -> None:
    request = envelopes.control_request(
        {"type": "NodeHeartbeat"},
        envelope_id="e",
        corr_id="c",
        reply_to="__sys__@/s/n",
        rtype=RTYPE_ACK,
        ts=TS,
    )
    answer = roundtrip(
        envelopes.answer(
            NodeHeartbeatAck(ok=True, ref_id="e", routing_epoch="ep"),
            trace_id=request["traceId"],
            corr_id="c",
            sid=None,
            ts=TS,
        )
    )
    assert answer.trace_id == request["traceId"] and answer.corr_id == "c"
    assert answer.sid is None and answer.frame.routing_epoch == "ep"


@pytest.mark.parametrize(
    ("rtype", "is_request"),
    [
        (None, False),
        (RTYPE_ACK, False),
        (RTYPE_REPLY, True),
        (RTYPE_STREAM, True),
        (RTYPE_REPLY | RTYPE_STREAM, True),
        ("2", False),
    ],
)
def test_rtype_masks(rtype: object, is_request: bool) -> None:
    assert envelopes.is_request_rtype(rtype) is is_request
