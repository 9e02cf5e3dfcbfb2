"""Admission as a plain shared consumer: a replica takes only as many sessions as it has slots, keeps them
in progress, and a dead replica's session goes to another after the takeover time, however often."""

from __future__ import annotations

from nats.js.api import DeliverPolicy

from proto import ingest
from services.transcode.app import work_consumer
from services.transcode.config import TranscodeConfig


def test_the_work_consumer_pulls_one_session_per_free_slot_and_keeps_it_in_progress() -> None:
    spec = work_consumer(TranscodeConfig(transcode_capacity=3, takeover_seconds=4.0))
    assert (spec.durable, spec.events) == ("transcode-work", (ingest.SessionStarted,))
    assert (spec.concurrency, spec.batch, spec.in_progress) == (3, 1, True)
    config = spec.config()
    assert config.ack_wait == 4.0  # a replica silent this long loses its sessions
    assert config.max_deliver == -1  # every takeover is a delivery
    assert config.deliver_policy == DeliverPolicy.NEW  # sessions from before the first start are not taken
