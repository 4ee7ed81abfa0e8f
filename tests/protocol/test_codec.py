"""Codec: round trips, the captured transcripts, and arbitrary input."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from famefabric.errors import RemoteProtocolError
from famefabric.protocol import codec
from famefabric.protocol.frames import (
    AddressBind,
    AddressBindAck,
    AddressUnbind,
    AddressUnbindAck,
    CapabilityAdvertise,
    CapabilityAdvertiseAck,
    CapabilityWithdraw,
    CapabilityWithdrawAck,
    CreditUpdate,
    Data,
    DeliveryAck,
    Envelope,
    Frame,
    IgnoredFrame,
    NodeAttach,
    NodeAttachAck,
    NodeHeartbeat,
    NodeHeartbeatAck,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "protocol-examples"

FRAMES: list[Frame] = [
    NodeAttach(
        system_id="DJ1VbdQa3tl4SJ7k",
        instance_id="i1",
        accepted_logicals=("fame.fabric",),
        callback_grants=(),
    ),
    NodeAttachAck(
        ref_id="r",
        target_system_id="S",
        target_physical_path="/S",
        assigned_path="/S/C",
        routing_epoch="e",
    ),
    NodeAttachAck(ok=False, reason="system id mismatch"),
    AddressBind(address="chat@fame.fabric", physical_path="/S/C", encryption_key_id="k"),
    AddressBindAck(ref_id="r", address="chat@fame.fabric"),
    AddressUnbind(address="chat@fame.fabric"),
    AddressUnbindAck(ref_id="r", address="chat@fame.fabric"),
    CapabilityAdvertise(capabilities=("fame.capability.agent",), address="chat@fame.fabric"),
    CapabilityAdvertiseAck(ref_id="r", capabilities=("a",), address="chat@fame.fabric"),
    CapabilityWithdraw(capabilities=("a", "b"), address="x@fame.fabric"),
    CapabilityWithdrawAck(ref_id="r", capabilities=("a",), address="x@fame.fabric"),
    NodeHeartbeat(),
    NodeHeartbeatAck(ref_id="r", routing_epoch="e"),
    Data(
        payload={
            "jsonrpc": "2.0",
            "id": "1",
            "method": "echo",
            "params": {"args": [None], "kwargs": {}},
        }
    ),
    Data(payload="bare string"),
    DeliveryAck(ok=False, code="NO_ROUTE", reason="Unroutable to x@fame.fabric", ref_id="r"),
    CreditUpdate(flow_id="f", credits=32),
    IgnoredFrame(name="NodeHello", fields={"systemId": "x"}),
]


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_every_frame_type_survives_a_round_trip(frame: Frame) -> None:
    envelope = Envelope(
        frame=frame,
        id="id1",
        trace_id="t",
        to="a@fame.fabric",
        reply_to="__rpc__x@/S/C",
        corr_id="c",
        flow_id="f",
        seq_id=3,
        flow_flags=1,
        ts="2026-11-25T00:00:00.000Z",
        meta={"deadline": 5},
    )
    assert codec.decode(codec.encode(envelope)) == envelope


def test_encode_omits_null_members_and_uses_camel_case() -> None:
    envelope = Envelope(frame=AddressBindAck(ref_id="r", address="a@fame.fabric"), corr_id="c")
    wire = orjson.loads(codec.encode(envelope))
    assert wire == {
        "version": "1.0",
        "corrId": "c",
        "frame": {"type": "AddressBindAck", "ok": True, "refId": "r", "address": "a@fame.fabric"},
    }


def test_decode_keeps_nulls_inside_payloads() -> None:
    text = '{"frame":{"type":"Data","payload":{"result":{"sessionId":null}}},"replyTo":null}'
    envelope = codec.decode(text)
    assert isinstance(envelope.frame, Data)
    assert envelope.frame.payload == {"result": {"sessionId": None}}
    assert envelope.reply_to is None


def test_decode_accepts_the_minimal_heartbeat_and_unknown_fields() -> None:
    envelope = codec.decode(
        b'{"frame":{"type":"NodeHeartbeat","extra":1},"corrId":"x","version":"2.0","surprise":true}'
    )
    assert envelope.frame == NodeHeartbeat()
    assert envelope.corr_id == "x"


def test_decode_rejects_unknown_frame_type() -> None:
    with pytest.raises(
        RemoteProtocolError, match=r"^unknown frame type 'NodeAtach'; expected one of NodeAttach, "
    ):
        codec.decode(b'{"frame":{"type":"NodeAtach"}}')


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (b"not json", "message is not valid JSON"),
        (b"[1, 2]", "envelope must be a JSON object, got list"),
        (b'{"id": "x"}', "envelope has no 'frame' object"),
        (
            b'{"frame": {"type": "Data"}, "to": "not an address"}',
            "invalid address 'not an address': missing '@'",
        ),
        (
            b'{"frame": {"type": "AddressBind"}}',
            "AddressBind frame is missing required field 'address'",
        ),
        (
            b'{"frame": {"type": "Data"}, "seqId": "3"}',
            "envelope 'seqId' must be an integer, got '3'",
        ),
        (
            b'{"frame": {"type": "CreditUpdate", "flowId": "f", "credits": "many"}}',
            "CreditUpdate.credits must be an integer",
        ),
    ],
)
def test_decode_rejects_malformed_envelopes_with_a_reason(message: bytes, error: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        codec.decode(message)
    assert error in str(info.value)


def test_every_captured_envelope_decodes_and_encodes_back() -> None:
    assert EXAMPLES.is_dir(), (
        f"the captured transcripts are expected at {EXAMPLES} (shared/ beside the repository)"
    )
    count = 0
    for path in sorted(EXAMPLES.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if "env" not in record or not isinstance(record["env"], dict):
                continue
            try:
                envelope = codec.decode(json.dumps(record["env"]))
            except RemoteProtocolError:
                continue  # the malformed-input scenarios
            count += 1
            again = codec.envelope_to_dict(envelope)
            for key in ("id", "to", "replyTo", "corrId", "traceId", "rtype"):
                assert again.get(key) == record["env"].get(key)
            assert again["frame"]["type"] == record["env"]["frame"]["type"]
    assert count > 2000


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_decode_of_arbitrary_bytes_raises_only_protocol_errors(data: bytes) -> None:
    try:
        codec.decode(data)
    except RemoteProtocolError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "id",
                "to",
                "replyTo",
                "rtype",
                "corrId",
                "flowId",
                "seqId",
                "capabilities",
                "meta",
                "frame",
            ]
        ),
        json_values
        | st.fixed_dictionaries(
            {
                "type": st.sampled_from(
                    ["Data", "NodeAttach", "AddressBind", "CreditUpdate", "DeliveryAck"]
                )
            },
            optional={
                "payload": json_values,
                "systemId": json_values,
                "instanceId": json_values,
                "address": json_values,
                "flowId": json_values,
                "credits": json_values,
                "ok": json_values,
            },
        ),
    )
)
def test_decode_of_arbitrary_envelopes_raises_only_protocol_errors(obj: dict[str, object]) -> None:
    try:
        codec.decode(json.dumps(obj))
    except RemoteProtocolError:
        pass
