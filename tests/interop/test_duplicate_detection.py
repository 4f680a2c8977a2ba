"""Duplicate detection in a real broker process: SIGKILL between SENDs and their RECEIPTs,
then the producer resends everything it sent, with the same _AMQ_DUPL_ID.

The promise under test: every message is delivered exactly once after the restart, whether
the kill came before its batch was written (message and id lost together: the resend is
taken), or after (message and id kept together: the resend is a duplicate, receipted)."""

from __future__ import annotations

import contextlib
import threading

from .conftest import TIMEOUT, Client, poll
from .test_durability import BrokerProcess, process  # noqa: F401 (the fixture)

#: Messages the producer may send; the kill comes well before they are all sent.
MESSAGES = 20_000
#: Receipts to see before the kill.
RECEIPTS_BEFORE_KILL = 500


def _produce(client: Client, sent: list[str], stop: threading.Event) -> None:
    """Send persistent messages with a duplicate id and a receipt each, until the broker dies."""
    for n in range(MESSAGES):
        if stop.is_set():
            break
        sent.append(f"m-{n}")
        try:
            client.conn.send(
                "/queue/dedup",
                f"m-{n}",
                headers={"persistent": "true", "receipt": f"r{n}", "_AMQ_DUPL_ID": f"m-{n}"},
            )
        except Exception:  # the broker is gone: stomp.py says so in several ways
            break


def test_resend_after_sigkill_delivers_every_message_exactly_once(
    process: BrokerProcess,  # noqa: F811 (the fixture)
) -> None:
    """SIGKILL mid-stream, restart, resend all with the same ids: each body arrives once."""
    process.start()
    stop = threading.Event()
    sent: list[str] = []
    producer = Client(process.port, "1.2")
    producer.connect()
    thread = threading.Thread(target=_produce, args=(producer, sent, stop), daemon=True)
    thread.start()
    poll(
        lambda: len(producer.frames.receipts) >= RECEIPTS_BEFORE_KILL,
        "receipts before the kill",
        timeout=TIMEOUT * 6,
    )
    process.kill()
    stop.set()
    thread.join(TIMEOUT)
    with producer.frames._changed:
        receipted = len(producer.frames.receipts)
    assert receipted < len(sent), "the kill came after the broker had answered everything"

    process.start()
    again = Client(process.port, "1.2")
    again.connect()
    for n, body in enumerate(sent):
        again.conn.send(
            "/queue/dedup",
            body,
            headers={"persistent": "true", "receipt": f"again-{n}", "_AMQ_DUPL_ID": body},
        )
    again.frames.wait(
        lambda: len(again.frames.receipts) >= len(sent),
        "a RECEIPT for every resend",
        timeout=TIMEOUT * 6,
    )
    again.send("/queue/dedup", "end", receipt=True)
    consumer = Client(process.port, "1.2")
    consumer.connect()
    consumer.subscribe("/queue/dedup", ack="auto")
    consumer.frames.wait(
        lambda: any(m.body == "end" for m in consumer.frames.messages),
        "the marker after every message",
        timeout=TIMEOUT * 6,
    )
    bodies = [m.body for m in consumer.frames.messages if m.body != "end"]
    assert sorted(bodies) == sorted(sent)
    for client in (again, consumer):
        with contextlib.suppress(Exception):
            client.disconnect()
