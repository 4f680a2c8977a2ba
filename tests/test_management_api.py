"""The management API and /metrics as twisted.web resources, through a listener in memory."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource

from stompbroker.codec import encode_frame
from stompbroker.core import BOUNDS, SAMPLE_EVERY, Broker, DestinationPolicy, PolicyMap
from stompbroker.core._inspect import tick
from stompbroker.session import StompSession
from stompbroker.store import MemoryStore
from stompbroker.testing import QUIET, RecordingConsumer
from stompbroker.transport import (
    Connections,
    Management,
    ManagementApi,
    Metrics,
    StompFactory,
    gzipped,
)
from tests.web import Answer, Web


class Setup:
    """A broker with a store, a connections registry, and the API over them."""

    def __init__(self, **broker: Any) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = MemoryStore()
        self.broker = Broker(clock=self.clock, store=self.store, **broker)
        self.connections = Connections(self.clock)
        self.management = Management(
            self.broker, self.connections, self.store, lambda: 12345, "b1", "9.9", 5.0
        )
        root = Resource()
        root.putChild(b"api", gzipped(ManagementApi(self.management)))
        root.putChild(b"metrics", gzipped(Metrics(self.management)))
        self.web = Web(root, clock=self.clock)
        self.factory = StompFactory(self._session, None, self.connections)
        self.transports: list[StringTransport] = []

    def _session(self, transport: Any, peer: str) -> StompSession:
        number = len(self.transports)
        return StompSession(self.broker, transport, self.clock, f"c{number}", QUIET, peer)

    def connect(self, **headers: str) -> tuple[Any, StringTransport]:
        """A TCP connection through the registry, CONNECTed with STOMP 1.2."""
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.7", 40000))
        self.transports.append(transport)
        protocol.makeConnection(transport)
        frame = encode_frame("CONNECT", {"accept-version": "1.2", "host": "h", **headers})
        protocol.dataReceived(frame)
        return protocol, transport

    def request(self, method: str, target: str, **headers: str) -> Answer:
        return self.web.request(method, target, **headers)

    def json(self, method: str, target: str, status: int = 200, **headers: str) -> Any:
        response = self.request(method, target, **headers)
        assert response.status == status, response.body
        assert response.headers["cache-control"] == "no-store"
        return response.json()


def _fill(broker: Broker, count: int, destination: str = "/queue/q") -> None:
    for i in range(count):
        broker.send(destination, {}, b"%d" % i)


# -- reading ---------------------------------------------------------------------------


def test_broker_route_shows_connections_messages_memory_and_store() -> None:
    """GET /api/broker describes the broker as a whole."""
    setup = Setup()
    setup.connect()
    _fill(setup.broker, 3)
    broker = setup.json("GET", "/api/broker")
    assert (broker["name"], broker["version"]) == ("b1", "9.9")
    assert broker["connections"]["open"] == 1 and broker["connections"]["bytes_in"] > 0
    assert broker["destinations"]["queue"] == 1
    assert broker["messages"]["enqueued"] == 3
    assert broker["memory"] == {"rss_bytes": 12345}
    assert broker["store"]["kind"] == "memory" and broker["store"]["batches"] == 0


def test_destinations_are_listed_and_filtered_by_kind() -> None:
    """GET /api/destinations lists every destination; ?kind= keeps one kind."""
    setup = Setup()
    _fill(setup.broker, 2)
    setup.broker.subscribe(RecordingConsumer(), "1", "/topic/news")
    listed = setup.json("GET", "/api/destinations")["destinations"]
    assert [(d["kind"], d["name"], d["depth"]) for d in listed] == [
        ("queue", "q", 2),
        ("topic", "news", 0),
    ]
    queues = setup.json("GET", "/api/destinations?kind=topic")["destinations"]
    assert [d["name"] for d in queues] == ["news"]
    assert "kind must be one of" in setup.json("GET", "/api/destinations?kind=x", 400)["error"]


def test_one_destination_by_kind_and_url_encoded_name() -> None:
    """GET /api/destinations/KIND/NAME finds names with wildcards and slashes."""
    setup = Setup()
    setup.broker.subscribe(RecordingConsumer(), "1", "/topic/prices.>")
    _fill(setup.broker, 1, "/queue/a/b")
    found = setup.json("GET", "/api/destinations/topic/prices.%3E")
    assert (found["address"], found["consumers"]) == ("/topic/prices.>", 1)
    assert setup.json("GET", "/api/destinations/queue/a%2Fb")["depth"] == 1
    assert "no queue named" in setup.json("GET", "/api/destinations/queue/zz", 404)["error"]


def test_durable_subscriptions_are_named_client_id_and_subscription() -> None:
    """A durable subscription is kind durable, named CLIENT_ID:NAME, with its topic."""
    setup = Setup()
    setup.broker.declare_durable("billing", "archive", "invoices.>", None)
    found = setup.json("GET", "/api/destinations/durable/billing:archive")
    assert found["durable"] == {
        "client_id": "billing",
        "subscription_name": "archive",
        "topic": "invoices.>",
        "attached": False,
        "no_local": False,
        "shared": False,
        "transient": False,
    }


def test_connections_show_peer_version_user_subscriptions_and_bytes() -> None:
    """GET /api/connections lists each open connection with what it knows."""
    setup = Setup()
    protocol, transport = setup.connect(**{"client-id": "app"})
    protocol.dataReceived(encode_frame("SUBSCRIBE", {"destination": "/queue/q", "id": "s1"}))
    (shown,) = setup.json("GET", "/api/connections")["connections"]
    assert shown["peer"] == "10.0.0.7:40000" and shown["transport"] == "tcp"
    assert (shown["version"], shown["user"], shown["client_id"]) == ("1.2", None, "app")
    assert shown["subscriptions"] == [
        {"id": "s1", "destination": "/queue/q", "ack": "auto", "in_flight": 0}
    ]
    assert shown["bytes_out"] == len(transport.value())
    assert setup.json("GET", f"/api/connections/{shown['id']}")["id"] == shown["id"]
    assert setup.json("GET", "/api/connections/nobody", 404)["error"]


def test_snapshot_holds_everything_with_its_schema() -> None:
    """GET /api/snapshot is the statistics topic's message: schema, broker, lists."""
    setup = Setup()
    setup.connect()
    _fill(setup.broker, 1)
    snapshot = setup.json("GET", "/api/snapshot")
    assert snapshot["schema"] == 1
    assert set(snapshot) == {
        "schema",
        "time",
        "broker",
        "destinations",
        "connections",
        "truncated",
        "latency_bounds_s",
    }
    assert len(snapshot["destinations"]) == 1 and len(snapshot["connections"]) == 1
    assert snapshot["truncated"] == {"destinations": False, "connections": False}


def test_snapshot_names_the_latency_buckets_bounds() -> None:
    """latency_bounds_s lists the upper bounds of a histogram's buckets (the last has none)."""
    setup = Setup()
    _fill(setup.broker, SAMPLE_EVERY)
    setup.broker.subscribe(RecordingConsumer(), "1", "/queue/q")
    snapshot = setup.json("GET", "/api/snapshot")
    assert snapshot["latency_bounds_s"] == list(BOUNDS)
    assert snapshot["latency_bounds_s"][:4] == [0.0001, 0.00025, 0.0005, 0.001]
    (queue,) = snapshot["destinations"]
    waited = queue["latency"]["enqueue_to_delivery"]
    assert len(waited["counts"]) == len(BOUNDS) + 1 and waited["count"] == 1


def test_destinations_say_whether_they_are_a_dead_letter_queue() -> None:
    """dead_letter_queue is true for the queues a policy dead-letters to, false elsewhere."""
    orders = DestinationPolicy(dead_letter_queue="/queue/orders.DLQ")
    policies = PolicyMap({"/queue/orders": orders})
    setup = Setup(policies=policies)
    for address in ("/queue/DLQ", "/queue/orders.DLQ", "/queue/q"):
        _fill(setup.broker, 1, address)
    setup.broker.subscribe(RecordingConsumer(), "1", "/topic/DLQ")
    listed = setup.json("GET", "/api/destinations")["destinations"]
    marked = {d["address"]: d["dead_letter_queue"] for d in listed if d["active"]}
    assert marked == {
        "/queue/DLQ": True,
        "/queue/orders.DLQ": True,
        "/queue/q": False,
        "/topic/DLQ": False,
    }
    assert setup.json("GET", "/api/destinations/queue/DLQ")["dead_letter_queue"] is True


# -- refusals -----------------------------------------------------------------------------


def test_wrong_methods_unknown_routes_and_actions() -> None:
    """A GET route refuses POST (405, Allow), an action refuses GET; unknown ones are 404."""
    setup = Setup()
    response = setup.request("POST", "/api/broker")
    assert response.status == 405 and response.headers["allow"] == "GET, HEAD"
    assert response.json() == {"error": "/api/broker answers GET only"}
    purge = setup.request("GET", "/api/destinations/queue/q/purge")
    assert (purge.status, purge.headers["allow"]) == (405, "POST")
    assert setup.json("POST", "/api/destinations/queue/q/explode", 404) == {
        "error": "no such action 'explode' (actions: purge, delete, replay)"
    }
    assert setup.json("GET", "/api/nothing", 404) == {"error": "no such resource: /api/nothing"}
    assert setup.json("GET", "/api/destinations/planet/x", 404) == {
        "error": "no such resource: /api/destinations/planet/x"
        " (kinds: queue, topic, durable, temp-queue, temp-topic)"
    }
    assert setup.json("GET", "/api/connections/c1/x", 404)["error"].startswith("no such resource")
    assert setup.json("GET", "/api", 404) == {"error": "no such resource: /api"}


def test_a_trailing_slash_is_the_same_route() -> None:
    """/api/broker/ and /api/destinations/ answer as without the slash."""
    setup = Setup()
    assert setup.json("GET", "/api/broker/")["name"] == "b1"
    assert setup.json("GET", "/api/destinations/") == {"destinations": []}


def test_head_gets_the_headers_without_the_body() -> None:
    """HEAD of a GET route: 200, its JSON headers, no body."""
    response = Setup().request("HEAD", "/api/broker")
    assert (response.status, response.body) == (200, b"")
    assert response.headers["content-type"] == "application/json"


def test_answers_are_gzipped_when_the_client_accepts_it() -> None:
    """Accept-Encoding: gzip gets Content-Encoding: gzip; the body decompresses to the JSON."""
    setup = Setup()
    _fill(setup.broker, 3)
    plain = setup.request("GET", "/api/destinations")
    zipped = setup.request("GET", "/api/destinations", accept_encoding="gzip")
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.body != plain.body
    assert json.loads(zipped.decoded()) == json.loads(plain.body)
    metrics = setup.request("GET", "/metrics", accept_encoding="gzip")
    assert metrics.headers["content-encoding"] == "gzip"
    assert metrics.decoded().startswith(b"# HELP ")


def test_a_post_from_a_page_of_another_origin_is_refused() -> None:
    """A browser POST from elsewhere is 403; from the same origin, or without Origin, it works."""
    setup = Setup()
    _fill(setup.broker, 1)
    target = "/api/destinations/queue/q/purge"
    evil = setup.request("POST", target, Origin="http://evil.example", Host="127.0.0.1:61614")
    assert evil.status == 403
    same = setup.request("POST", target, Origin="http://127.0.0.1:61614", Host="127.0.0.1:61614")
    assert same.status == 200
    assert setup.request("POST", target).status == 200


# -- admin actions ------------------------------------------------------------------------


def test_purge_drops_waiting_messages_paged_ones_too_and_keeps_those_in_flight() -> None:
    """POST .../purge empties a queue (memory and disk) but leaves unacknowledged messages."""
    setup = Setup(policies=PolicyMap({"/queue/>": DestinationPolicy(memory_window=5)}))
    _fill(setup.broker, 30)
    consumer = RecordingConsumer()
    setup.broker.subscribe(consumer, "1", "/queue/q", "client", prefetch=2)
    assert setup.json("POST", "/api/destinations/queue/q/purge") == {"purged": 28}
    assert setup.broker.queue_depth("q") == 0
    assert len(consumer.take()) == 2
    assert setup.store.count() == 2  # only the two in flight keep their rows
    assert setup.json("GET", "/api/broker")["messages"]["purged"] == 28


def test_purge_refuses_topics_and_unknown_queues() -> None:
    """Only queue-like destinations can be purged; an unknown one is 404."""
    setup = Setup()
    setup.broker.subscribe(RecordingConsumer(), "1", "/topic/t")
    assert "only queues" in setup.json("POST", "/api/destinations/topic/t/purge", 400)["error"]
    assert setup.json("POST", "/api/destinations/queue/none/purge", 404)["error"]


def test_delete_refuses_a_destination_in_use_and_deletes_it_once_free() -> None:
    """POST .../delete is 409 while a consumer is attached; then it removes queue and rows."""
    setup = Setup()
    _fill(setup.broker, 3)
    subscription = setup.broker.subscribe(RecordingConsumer(), "1", "/queue/busy")
    assert "consumer" in setup.json("POST", "/api/destinations/queue/busy/delete", 409)["error"]
    setup.broker.unsubscribe(subscription)
    assert setup.json("POST", "/api/destinations/queue/q/delete") == {
        "deleted": True,
        "messages": 3,
    }
    assert "q" not in setup.broker.destinations.queues and setup.store.count() == 0
    assert setup.json("GET", "/api/destinations/queue/q", 404)


def test_delete_removes_a_detached_durable_subscription() -> None:
    """A durable subscription nobody is attached to can be deleted with what it kept."""
    setup = Setup()
    setup.broker.declare_durable("c", "d", "news", None)
    setup.broker.send("/topic/news", {"persistent": "true"}, b"kept")
    deleted = setup.json("POST", "/api/destinations/durable/c:d/delete")
    assert deleted == {"deleted": True, "messages": 1}
    assert len(setup.broker.durables) == 0


def test_replay_sends_dead_letters_back_to_their_original_destination() -> None:
    """POST .../replay re-sends DLQ messages without the dead-letter headers; others stay."""
    setup = Setup()
    setup.broker.send("/queue/orders", {"ttl": "1000", "k": "v"}, b"late")
    setup.broker.send("/queue/DLQ", {}, b"no origin")
    setup.clock.advance(2)
    setup.broker.sweep_expired()
    assert setup.broker.queue_depth("DLQ") == 2
    result = setup.json("POST", "/api/destinations/queue/DLQ/replay")
    assert result == {"replayed": 1, "skipped": 1, "failed": 0, "remaining": 1}
    consumer = RecordingConsumer()
    setup.broker.subscribe(consumer, "1", "/queue/orders")
    (message,) = consumer.take()
    assert message.body == b"late" and message.headers["k"] == "v"
    assert "dead-letter-reason" not in message.headers
    assert "original-destination" not in message.headers


def test_replay_honours_a_limit() -> None:
    """?limit=N replays at most N messages."""
    setup = Setup()
    for i in range(3):
        setup.broker.send("/queue/DLQ", {"original-destination": "/queue/back"}, b"%d" % i)
    result = setup.json("POST", "/api/destinations/queue/DLQ/replay?limit=2")
    assert result["replayed"] == 2 and result["remaining"] == 1
    assert setup.json("POST", "/api/destinations/queue/DLQ/replay?limit=x", 400)["error"]


def test_close_connection_sends_an_error_and_closes() -> None:
    """POST /api/connections/ID/close ends it with ERROR "closed by an administrator"."""
    setup = Setup()
    _, transport = setup.connect()
    (connection_id,) = setup.connections.open
    assert setup.json("POST", f"/api/connections/{connection_id}/close") == {"closed": True}
    assert b"ERROR\nmessage:closed by an administrator\n" in transport.value()
    assert transport.disconnecting
    assert setup.json("POST", "/api/connections/nobody/close", 404)["error"]


# -- /metrics -----------------------------------------------------------------------------

_ORDER = ("kind", "destination", "subscription", "le")


def _key(name: str, labels: dict[str, str]) -> str:
    """A sample as ``name{labels}``: kind, destination, subscription, le, then the rest."""
    names = sorted(labels, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n))
    escaped = (
        f'{n}="{labels[n].replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for n in names
    )
    inside = ",".join(escaped)
    return name + ("{" + inside + "}" if inside else "")


def _metrics(setup: Setup, accept: str | None = None) -> tuple[str, dict[str, float]]:
    """A scrape, parsed by prometheus_client's parser (OpenMetrics' when asked for)."""
    headers = {} if accept is None else {"accept": accept}
    response = setup.request("GET", "/metrics", **headers)
    assert response.status == 200
    text = response.body.decode()
    content_type = response.headers["content-type"]
    if accept is None:
        assert content_type == "text/plain; version=0.0.4; charset=utf-8"
        families = list(text_string_to_metric_families(text))
    else:
        assert content_type.startswith("application/openmetrics-text; version=1.0.0")
        assert text.endswith("# EOF\n")
        families = list(openmetrics_families(text))
    samples = {_key(s.name, s.labels): s.value for f in families for s in f.samples}
    return text, samples


def test_metrics_are_valid_text_format_with_broker_and_destination_series() -> None:
    """/metrics: HELP and TYPE before samples, sample lines well formed, names as documented."""
    setup = Setup()
    setup.connect()
    _fill(setup.broker, 4)
    text, samples = _metrics(setup)
    assert text.endswith("\n")
    assert samples['stompbroker_info{name="b1",version="9.9"}'] == 1
    assert samples["stompbroker_connections"] == 1
    assert samples["process_resident_memory_bytes"] > 0  # the library's ProcessCollector
    assert samples['stompbroker_destination_depth{kind="queue",destination="/queue/q"}'] == 4
    enqueued = 'stompbroker_destination_enqueued_total{kind="queue",destination="/queue/q"}'
    assert samples[enqueued] == 4
    assert "# TYPE stompbroker_destination_enqueued_total counter" in text


def test_latency_histograms_are_cumulative_with_inf_sum_and_count() -> None:
    """A sampled latency becomes a histogram: cumulative buckets up to +Inf, then sum, count."""
    setup = Setup()
    _fill(setup.broker, SAMPLE_EVERY)
    setup.clock.advance(0.3)
    setup.broker.subscribe(RecordingConsumer(), "1", "/queue/q")
    text, samples = _metrics(setup)
    name = "stompbroker_destination_enqueue_to_delivery_seconds"
    labels = 'kind="queue",destination="/queue/q"'
    assert samples[f'{name}_bucket{{{labels},le="0.25"}}'] == 0
    assert samples[f'{name}_bucket{{{labels},le="0.5"}}'] == 1
    assert samples[f'{name}_bucket{{{labels},le="+Inf"}}'] == 1
    assert samples[f"{name}_count{{{labels}}}"] == 1
    assert samples[f"{name}_sum{{{labels}}}"] == pytest.approx(0.3)
    buckets = [line for line in text.splitlines() if line.startswith(f"{name}_bucket")]
    assert len(buckets) == len(BOUNDS) + 1


def test_label_values_are_escaped() -> None:
    """Quotes, backslashes and newlines in a destination name are escaped in labels."""
    setup = Setup()
    setup.broker.send('/queue/we"ird\\name', {}, b"x")
    _, samples = _metrics(setup)
    key = 'stompbroker_destination_depth{kind="queue",destination="/queue/we\\"ird\\\\name"}'
    assert samples[key] == 1


def test_durable_series_name_their_subscription() -> None:
    """A durable subscription's series carry its topic and subscription="CLIENT_ID:NAME"."""
    setup = Setup()
    setup.broker.declare_durable("c", "d", "news", None)
    tick(setup.broker)
    _, samples = _metrics(setup)
    key = (
        'stompbroker_destination_consumers{kind="durable",destination="/topic/news",'
        'subscription="c:d"}'
    )
    assert samples[key] == 0


def test_duplicates_are_counted_in_metrics_per_destination_and_broker_wide() -> None:
    """A resend with a seen _AMQ_DUPL_ID shows in destination_duplicates_total and the total."""
    setup = Setup()
    for _ in range(3):
        setup.broker.send("/queue/q", {"_AMQ_DUPL_ID": "x"}, b"m")
    _, samples = _metrics(setup)
    assert (
        samples['stompbroker_destination_duplicates_total{kind="queue",destination="/queue/q"}']
        == 2
    )
    assert samples["stompbroker_messages_duplicates_total"] == 2


def test_openmetrics_when_the_scraper_asks_for_it() -> None:
    """Accept: application/openmetrics-text gets OpenMetrics: the same series, # EOF at the end."""
    setup = Setup()
    _fill(setup.broker, 4)
    accept = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"
    text, samples = _metrics(setup, accept)
    assert samples['stompbroker_destination_depth{kind="queue",destination="/queue/q"}'] == 4
    assert (
        samples['stompbroker_destination_enqueued_total{kind="queue",destination="/queue/q"}'] == 4
    )
    assert samples['stompbroker_info{name="b1",version="9.9"}'] == 1
    assert "# TYPE stompbroker_destination_enqueued counter" in text


def test_process_and_python_collectors_are_on_every_scrape() -> None:
    """The library's process, platform and GC collectors are in the broker's registry."""
    setup = Setup()
    _, samples = _metrics(setup)
    assert samples["process_open_fds"] > 0
    assert samples["process_cpu_seconds_total"] >= 0
    assert any(key.startswith("python_info{") for key in samples)
    assert any(key.startswith("python_gc_collections_total{") for key in samples)


def test_two_brokers_in_one_process_have_registries_of_their_own() -> None:
    """Each Management scrapes its own broker: series do not mix, registration does not clash."""
    first, second = Setup(), Setup()
    _fill(first.broker, 2)
    _, samples = _metrics(second)
    assert not any("/queue/q" in key for key in samples)
    assert (
        _metrics(first)[1]['stompbroker_destination_depth{kind="queue",destination="/queue/q"}']
        == 2
    )


def test_scheduled_messages_are_exported_per_destination() -> None:
    """A message waiting for its delivery time counts in
    stompbroker_destination_scheduled_messages of its queue, and leaves it when due."""
    setup = Setup()
    setup.broker.send("/queue/q", {"AMQ_SCHEDULED_DELAY": "60000"}, b"later")
    _fill(setup.broker, 1)
    key = 'stompbroker_destination_scheduled_messages{kind="queue",destination="/queue/q"}'
    assert _metrics(setup)[1][key] == 1
    setup.clock.advance(60)
    assert _metrics(setup)[1][key] == 0
    assert setup.broker.queue_depth("q") == 2
