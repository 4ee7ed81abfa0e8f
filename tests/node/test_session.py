"""The per-connection session: attach, credits, heartbeats, liveness (no I/O)."""

from __future__ import annotations

import pytest

from famefabric.errors import RemoteProtocolError
from famefabric.node.backoff import AttachRefused
from famefabric.node.session import Session
from famefabric.protocol.frames import Envelope, NodeAttach, NodeAttachAck, NodeHeartbeatAck


def attached(now: float = 0.0) -> Session:
    session = Session(system_id="N", accepted_logicals=("*",), now=now)
    attach = session.attach_envelope()
    ack = Envelope(
        corr_id=attach.corr_id,
        frame=NodeAttachAck(
            ok=True,
            ref_id=attach.id,
            target_system_id="S",
            target_physical_path="/S",
            assigned_path="/S/N",
            routing_epoch="e1",
        ),
    )
    assert session.is_attach_answer(ack)
    session.accept_attach(ack, now=now)
    return session


def test_attach_envelope_carries_ids_and_no_routing_fields() -> None:
    session = Session(system_id="N", accepted_logicals=("fame.fabric",), now=0.0)
    envelope = session.attach_envelope()
    assert isinstance(envelope.frame, NodeAttach)
    assert envelope.frame.system_id == "N"
    assert envelope.frame.instance_id == session.instance_id
    assert envelope.frame.accepted_logicals == ("fame.fabric",)
    assert envelope.frame.callback_grants == ()
    assert envelope.corr_id and envelope.trace_id and envelope.id
    assert envelope.sid is None and envelope.to is None and envelope.reply_to is None


def test_each_session_has_its_own_instance_and_flow() -> None:
    first = Session(system_id="N", accepted_logicals=(), now=0.0)
    second = Session(system_id="N", accepted_logicals=(), now=0.0)
    assert first.instance_id != second.instance_id
    assert first.flow_id != second.flow_id


def test_accepting_the_ack_records_path_sentinel_and_epoch() -> None:
    session = attached()
    assert session.attachment is not None
    assert session.attachment.assigned_path == "/S/N"
    assert session.attachment.sentinel_id == "S"
    assert session.attachment.routing_epoch == "e1"
    assert session.system_address == "__sys__@/S/N"
    assert session.rpc_address("abc") == "__rpc__abc@/S/N"
    assert session.sid is not None and len(session.sid) >= 20


def test_an_ack_with_another_corr_id_is_not_the_answer() -> None:
    session = Session(system_id="N", accepted_logicals=(), now=0.0)
    session.attach_envelope()
    other = Envelope(corr_id="nope", frame=NodeAttachAck(ok=True))
    assert not session.is_attach_answer(other)


def test_a_refused_attach_raises_with_the_reason() -> None:
    session = Session(system_id="N", accepted_logicals=(), now=0.0)
    attach = session.attach_envelope()
    refusal = Envelope(
        corr_id=attach.corr_id, frame=NodeAttachAck(ok=False, reason="system id mismatch")
    )
    with pytest.raises(AttachRefused, match="system id mismatch") as caught:
        session.accept_attach(refusal, now=0.0)
    assert caught.value.reason == "system id mismatch"
    assert not session.is_attached


def test_an_ack_without_assigned_path_is_a_protocol_error() -> None:
    session = Session(system_id="N", accepted_logicals=(), now=0.0)
    attach = session.attach_envelope()
    bad = Envelope(corr_id=attach.corr_id, frame=NodeAttachAck(ok=True, target_system_id="S"))
    with pytest.raises(RemoteProtocolError, match="lacks assignedPath"):
        session.accept_attach(bad, now=0.0)


def test_credit_update_is_due_at_the_24th_and_48th_envelope_of_a_flow() -> None:
    session = attached()
    due = [n for n in range(1, 73) if session.on_receive("f1", now=0.0) is not None]
    assert due == [24, 48, 72]
    credit = attached().on_receive("f2", now=0.0)
    assert credit is None


def test_credit_update_wire_shape() -> None:
    session = attached()
    credit = None
    for _ in range(24):
        credit = session.on_receive("flowA", now=0.0)
    assert credit is not None
    assert credit["frame"] == {"type": "CreditUpdate", "flowId": "flowA", "credits": 32}
    assert (credit["flowId"], credit["seqId"], credit["flowFlags"]) == ("flowA", 0, 2)
    assert "sid" not in credit and "corrId" not in credit


def test_envelopes_without_a_flow_are_not_counted() -> None:
    session = attached()
    assert all(session.on_receive(None, now=0.0) is None for _ in range(100))


def test_stamp_counts_per_flow_and_keeps_reset() -> None:
    session = attached()
    first: dict[str, object] = {}
    session.stamp(first)
    second: dict[str, object] = {}
    session.stamp(second)
    nack: dict[str, object] = {"flowFlags": 4}
    session.stamp(nack)
    other: dict[str, object] = {"flowId": "elsewhere"}
    session.stamp(other)
    assert (first["flowId"], first["seqId"], first["flowFlags"]) == (session.flow_id, 0, 1)
    assert (second["seqId"], second["flowFlags"]) == (1, 0)
    assert (nack["seqId"], nack["flowFlags"]) == (2, 4)
    assert (other["flowId"], other["seqId"], other["flowFlags"]) == ("elsewhere", 0, 1)


def test_heartbeat_envelope_has_a_fresh_corr_id() -> None:
    session = attached()
    one, two = session.heartbeat_envelope(), session.heartbeat_envelope()
    assert one["frame"] == {"type": "NodeHeartbeat"}
    assert one["corrId"] != two["corrId"]
    assert "to" not in one and "replyTo" not in one


def test_heartbeat_ack_reports_an_epoch_change_once() -> None:
    session = attached()
    assert not session.on_heartbeat_ack(NodeHeartbeatAck(routing_epoch="e1"), now=1.0)
    assert session.on_heartbeat_ack(NodeHeartbeatAck(routing_epoch="e2"), now=2.0)
    assert not session.on_heartbeat_ack(NodeHeartbeatAck(routing_epoch="e2"), now=3.0)
    assert not session.on_heartbeat_ack(NodeHeartbeatAck(), now=4.0)
    assert session.attachment is not None and session.attachment.routing_epoch == "e2"


def test_liveness_fails_after_silence() -> None:
    session = attached(now=100.0)
    assert session.liveness_failure(now=129.9, timeout=30.0) is None
    assert session.liveness_failure(now=130.0, timeout=30.0) == (
        "nothing received from the sentinel for 30.0 s"
    )


def test_liveness_fails_without_heartbeat_acks_even_when_other_traffic_flows() -> None:
    session = attached(now=0.0)
    session.on_heartbeat_ack(NodeHeartbeatAck(), now=10.0)
    for t in range(10, 41):
        session.on_receive("f", now=float(t))
    assert session.liveness_failure(now=39.0, timeout=30.0) is None
    assert session.liveness_failure(now=40.0, timeout=30.0) == (
        "no heartbeat ack from the sentinel for 30.0 s"
    )
