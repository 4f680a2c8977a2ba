"""The web console's pictures and tables in headless Chromium: a destination's charts (rates
and latency histograms), the connections and the durable subscriptions.

Built on test_console.py's broker (statistics every 200 ms) and its page driver; screenshots go
to tests/interop/artifacts/ (gitignored) as there.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stompbroker.config import BrokerSection, Config, PostgresqlSection

from . import _listeners, test_console
from ._listeners import Listeners
from .conftest import Client
from .test_console import StartConsole, cell, keep, no_browser_complaints, run_console

pytestmark = pytest.mark.interop

node = test_console.node
chromium = test_console.chromium
start_broker = _listeners.start_broker
start_console = test_console.start_console

QUEUE = "console.traffic"
ROW = f'tr[data-kind="queue"][data-name="{QUEUE}"]'
#: Between two sends of the background producer, in seconds: its pace, not a wait.
PACE = 0.01


def text(selector: str) -> str:
    """A JS expression: the text of the first element ``selector`` matches ('' when none)."""
    return f"((document.querySelector({json.dumps(selector)}) || {{}}).textContent || '')"


def connected_client(broker: Listeners, headers: dict[str, str] | None = None) -> Client:
    """A stomp.py 1.2 client CONNECTed (with ``headers``, e.g. a client-id)."""
    client = Client(broker.port, "1.2")
    client.conn.connect(wait=False, headers=headers or {})
    frames = client.frames
    frames.wait(lambda: bool(frames.connected or frames.errors), "CONNECTED")
    assert frames.connected, [e.headers for e in frames.errors]
    return client


@pytest.fixture
def traffic(start_console: StartConsole) -> Iterator[Listeners]:
    """A broker with 32 messages delivered and acknowledged one by one on QUEUE (two of them
    timed: one in 16), then a producer sending to it and a consumer taking from it until the
    test ends."""
    broker = start_console(Config())
    producer = Client(broker.port, "1.2")
    producer.connect()
    consumer = Client(broker.port, "1.2")
    consumer.connect()
    acking = consumer.subscribe(f"/queue/{QUEUE}", ack="client-individual")
    for n in range(32):
        producer.send(f"/queue/{QUEUE}", f"m{n}", receipt=True)
    for message in consumer.wait_messages(32):
        consumer.ack(message)
    consumer.unsubscribe(acking)
    consumer.subscribe(f"/queue/{QUEUE}")
    stop = threading.Event()

    def produce() -> None:
        while not stop.wait(PACE):
            producer.send(f"/queue/{QUEUE}", "more", receipt=True)

    thread = threading.Thread(target=produce, name="console-producer", daemon=True)
    thread.start()
    yield broker
    stop.set()
    thread.join(5)
    consumer.disconnect()
    producer.disconnect()


def test_a_selected_destination_charts_its_rates_and_latency_under_traffic(
    node: str, chromium: Path, traffic: Listeners, tmp_path: Path
) -> None:
    """Enter on a destination's row shows its in/out/depth chart, which fills and moves with
    the traffic, and its two latency histograms as bars labelled with their buckets' bounds;
    the row keeps the focus through the redraws. Screenshot (under load):
    tests/interop/artifacts/console-destination.png."""
    samples = "Number(document.querySelector('#detail-chart-svg').dataset.samples || 0)"
    caption = text("#detail-chart-caption")
    moving = f"{samples} >= 3 && !{caption}.includes('now: in 0.0/s')"
    focused = "(document.activeElement.dataset || {}).focus"
    bars = "[...document.querySelectorAll('#latency-delivery-svg rect.bar')]"
    screenshot = tmp_path / "console-destination.png"
    steps = [
        {"wait": f"{cell('queue', QUEUE, 'enqueued')} !== ''"},
        {"read": "document.querySelector('#detail').hidden", "as": "hidden_before"},
        {"press": "Enter", "on": ROW},
        {"wait": moving},
        {"read": f"window.firstSamples = {samples}", "as": "first"},
        {"wait": f"{samples} > window.firstSamples"},
        {"read": samples, "as": "later"},
        {"read": caption, "as": "caption"},
        {"read": text("#detail-title"), "as": "title"},
        {"read": focused, "as": "focused"},
        {
            "read": f"document.querySelector({json.dumps(ROW)}).getAttribute('aria-current')",
            "as": "selected",
        },
        {"read": f"{bars}.length", "as": "buckets"},
        {
            "read": f"{bars}.filter((b) => Number(b.getAttribute('height')) > 0).length",
            "as": "filled",
        },
        {
            "read": "[...document.querySelectorAll('#latency-delivery-svg text.bound')]"
            ".map((t) => t.textContent)",
            "as": "bounds",
        },
        {"read": text("#latency-delivery-caption"), "as": "waited"},
        {"read": text("#latency-ack-caption"), "as": "held"},
        {"read": "document.querySelector('#latency-ack-svg').dataset.bars", "as": "held_bars"},
        {
            "read": "document.querySelector('#detail-chart-svg').getAttribute('aria-labelledby')",
            "as": "labelled_by",
        },
        {"screenshot": str(screenshot)},
    ]
    url = f"http://127.0.0.1:{traffic.ws_port()}/"
    result = run_console(node, url, steps, tmp_path)
    results = result["results"]
    assert results["hidden_before"] is True, results
    assert results["title"] == f"queue /queue/{QUEUE}", results
    assert results["later"] > results["first"] >= 3, results
    assert results["caption"].startswith(f"last {results['later']} samples (in: blue"), results
    assert (results["focused"], results["selected"]) == (f"destination queue {QUEUE}", "true")
    assert results["buckets"] >= 8 and results["filled"] >= 1, results
    assert results["bounds"] and all(b.startswith(("≤ ", "> ")) for b in results["bounds"])
    assert any(b.endswith(("µs", "ms")) for b in results["bounds"]), results["bounds"]
    assert results["waited"].startswith("waiting before the first delivery: "), results
    assert " timed messages; p50 ≤ " in results["waited"], results
    assert results["held"].startswith("held by a client-ack consumer until its ACK: 2 timed")
    assert int(results["held_bars"]) >= 1, results
    assert results["labelled_by"] == "detail-chart-caption"
    no_browser_complaints(result["console"])
    assert keep(screenshot).stat().st_size > 0


def test_the_connections_table_lists_a_stomppy_client(
    node: str, chromium: Path, start_console: StartConsole, tmp_path: Path
) -> None:
    """A stomp.py client shows with its login (anonymous), address, transport, client id,
    subscriptions and the message it has not acknowledged; the console's own connection is
    marked as such."""
    broker = start_console(Config())
    client = connected_client(broker, {"client-id": "shop-1"})
    session = client.frames.connected[0].headers["session"]
    client.subscribe(f"/queue/{QUEUE}", ack="client")
    client.send(f"/queue/{QUEUE}", "held", receipt=True)
    client.wait_messages(1)
    row = f'#connections tr[data-id="{session}"]'
    fields = ("user", "peer", "transport", "client_id", "since", "subscriptions", "in_flight")
    steps = [
        {"wait": f"{text(f'{row} td[data-field=in_flight]')} === '1'"},
        *({"read": text(f"{row} td[data-field={field}]"), "as": field} for field in fields),
        {"read": "document.querySelectorAll('#connections tbody tr').length", "as": "rows"},
        {"read": text("#connections tr.own td[data-field=user]"), "as": "own"},
    ]
    url = f"http://127.0.0.1:{broker.ws_port()}/"
    result = run_console(node, url, steps, tmp_path)
    results = result["results"]
    assert results["user"] == "anonymous", results
    assert results["peer"].startswith("127.0.0.1:"), results
    assert results["transport"] == "tcp, STOMP 1.2"
    assert results["client_id"] == "shop-1"
    assert results["subscriptions"] == f"1: /queue/{QUEUE} (client)"
    assert results["since"].endswith(" s)"), results
    assert (results["rows"], results["own"]) == (2, "anonymous (this console)")
    no_browser_complaints(result["console"])
    client.disconnect()


def test_the_durables_table_lists_a_durable_subscription(
    node: str, chromium: Path, start_console: StartConsole, tmp_path: Path
) -> None:
    """A detached durable subscription shows with its client id, name, topic, state and the
    messages kept for it."""
    broker = start_console(Config())
    subscriber = connected_client(broker, {"client-id": "archiver"})
    subscriber.subscribe("/topic/news", headers={"activemq.subscriptionName": "nightly"})
    subscriber.disconnect()
    producer = Client(broker.port, "1.2")
    producer.connect()
    producer.send("/topic/news", "one", receipt=True)
    producer.send("/topic/news", "two", receipt=True)
    row = '#durables tr[data-name="archiver:nightly"]'
    fields = ("client_id", "subscription", "topic", "state", "pending", "in_flight")
    steps = [
        {"wait": f"{text(f'{row} td[data-field=pending]')} === '2'"},
        *({"read": text(f"{row} td[data-field={field}]"), "as": field} for field in fields),
        {"read": "document.querySelectorAll('#durables tbody tr').length", "as": "rows"},
    ]
    url = f"http://127.0.0.1:{broker.ws_port()}/"
    result = run_console(node, url, steps, tmp_path)
    results = result["results"]
    shown = {field: results[field] for field in fields}
    assert shown == {
        "client_id": "archiver",
        "subscription": "nightly",
        "topic": "/topic/news",
        "state": "detached",
        "pending": "2",
        "in_flight": "0",
    }
    assert results["rows"] == 1
    no_browser_complaints(result["console"])
    producer.disconnect()


def test_the_scheduled_column_shows_the_messages_waiting_for_their_time(
    node: str, chromium: Path, start_console: StartConsole, tmp_path: Path
) -> None:
    """Two messages sent with AMQ_SCHEDULED_DELAY show as 2 in their queue's scheduled
    column; a destination with none shows 0."""
    broker = start_console(Config())
    producer = Client(broker.port, "1.2")
    producer.connect()
    producer.send(f"/queue/{QUEUE}", "now", receipt=True)
    for n in range(2):
        producer.send(
            f"/queue/{QUEUE}", f"later {n}", {"AMQ_SCHEDULED_DELAY": "600000"}, receipt=True
        )
    scheduled = cell("queue", QUEUE, "scheduled")
    steps = [
        {"wait": f"{scheduled} === '2'"},
        {"read": cell("topic", "stompbroker.stats", "scheduled"), "as": "stats"},
    ]
    result = run_console(node, f"http://127.0.0.1:{broker.ws_port()}/", steps, tmp_path)
    assert result["results"]["stats"] == "0"
    no_browser_complaints(result["console"])
    producer.disconnect()


def test_the_overview_names_the_live_nodes_of_a_cluster(
    node: str, chromium: Path, start_console: StartConsole, tmp_path: Path, postgres_dsn: str
) -> None:
    """On PostgreSQL, the overview has a "cluster" line: this node's name and the live nodes
    (here two: the console's broker and another on the same database)."""
    start_console(
        Config(
            broker=BrokerSection(store="postgresql"),
            postgresql=PostgresqlSection(dsn=postgres_dsn, node="other:61613"),
        )
    )
    broker = start_console(
        Config(
            broker=BrokerSection(store="postgresql"),
            postgresql=PostgresqlSection(dsn=postgres_dsn, node="console:61613"),
        )
    )
    line = text('#broker div[data-field="cluster"] dd')
    steps = [{"wait": f"{line}.includes('2 live')"}, {"read": line, "as": "cluster"}]
    result = run_console(node, f"http://127.0.0.1:{broker.ws_port()}/", steps, tmp_path)
    assert result["results"]["cluster"] in (
        "node console:61613; 2 live: console:61613, other:61613",
        "node console:61613; 2 live: other:61613, console:61613",
    )
    no_browser_complaints(result["console"])
