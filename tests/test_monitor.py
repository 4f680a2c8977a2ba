"""The statistics topic, who may use the management API, and JSON logs."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import LogEvent, Logger, formatEvent
from twisted.web.resource import Resource

from stompbroker.config import Config, ManagementSection, WebSocketListener
from stompbroker.core import (
    STATS_TOPIC,
    AccessControl,
    Broker,
    PolicyMap,
    Rule,
    StatsPublisher,
    User,
    hash_password,
)
from stompbroker.logs import FILE_VARIABLE, JsonLogObserver, json_observer, record
from stompbroker.monitor import (
    CREDENTIALS_TTL,
    ApiGate,
    RememberedLogins,
    is_loopback_endpoint,
    rss_bytes,
)
from stompbroker.service import BrokerService
from stompbroker.testing import RecordingConsumer
from stompbroker.transport import WebSocketSettings, security_headers
from tests.web import Answer, Web

# -- the statistics topic -------------------------------------------------------------------


def _publisher() -> tuple[Broker, StatsPublisher]:
    broker = Broker(clock=Clock())
    return broker, StatsPublisher(broker, lambda: {"schema": 1, "answer": 42})


def test_nothing_is_published_while_nobody_listens() -> None:
    """Without a subscriber to the statistics topic, a tick builds and sends nothing."""
    broker, publisher = _publisher()
    publisher.tick()
    assert publisher.published == 0 and broker.destinations.topics == {}


def test_a_subscriber_gets_a_json_snapshot_each_tick() -> None:
    """A subscriber to /topic/stompbroker.stats gets the snapshot as JSON, every tick."""
    broker, publisher = _publisher()
    consumer = RecordingConsumer()
    broker.subscribe(consumer, "1", STATS_TOPIC)
    publisher.tick()
    publisher.tick()
    first, second = consumer.take()
    assert json.loads(first.body) == {"schema": 1, "answer": 42}
    assert first.headers["content-type"] == "application/json"
    assert not first.persistent and second.body == first.body


def test_wildcard_subscribers_and_attached_durables_count_as_listeners() -> None:
    """A wildcard subscription matching the topic listens; a detached durable one does not."""
    broker, publisher = _publisher()
    broker.declare_durable("c", "stats", "stompbroker.>", None)
    assert not publisher.listened()
    subscription = broker.subscribe(RecordingConsumer(), "1", "/topic/stompbroker.*")
    assert publisher.listened()
    broker.unsubscribe(subscription)
    broker.durables.subscribe(RecordingConsumer(), "2", "/topic/stompbroker.>", "c", "stats")
    assert publisher.listened()


def test_the_statistics_topic_is_allowed_without_auto_create() -> None:
    """Even a broker that creates only declared destinations lets clients subscribe to it."""
    broker = Broker(clock=Clock(), policies=PolicyMap({}), auto_create=False)
    broker.subscribe(RecordingConsumer(), "1", STATS_TOPIC)


def test_a_failing_snapshot_is_logged_and_the_ticks_go_on(
    logged_failures: list[LogEvent],
) -> None:
    """An exception while building the snapshot is logged, never raised into the timer."""
    broker = Broker(clock=Clock())

    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    publisher = StatsPublisher(broker, broken)
    broker.subscribe(RecordingConsumer(), "1", STATS_TOPIC)
    publisher.tick()
    assert publisher.published == 0
    (failure,) = logged_failures
    assert formatEvent(failure) == "building the statistics snapshot failed"
    assert failure["log_failure"].check(RuntimeError)


def test_the_service_publishes_every_stats_interval(tmp_path: Path) -> None:
    """A running broker publishes a full snapshot each management.stats_interval_ms."""
    clock = Clock()
    config = Config()
    config = replace(
        config,
        broker=replace(config.broker, data_dir=str(tmp_path), store="memory"),
        management=ManagementSection(stats_interval_ms=2000),
    )
    service = BrokerService(config, clock, [])
    service.startService()
    consumer = RecordingConsumer()
    service.broker.subscribe(consumer, "1", STATS_TOPIC)
    clock.pump([1.0] * 6)
    snapshots = [json.loads(m.body) for m in consumer.take()]
    assert len(snapshots) == 3
    assert snapshots[0]["broker"]["stats_interval_s"] == 2.0
    assert {d["name"] for d in snapshots[-1]["destinations"]} == {"stompbroker.stats"}
    service.stopService()


# -- who may use the API ----------------------------------------------------------------------


class _Ok(Resource):
    """What the gate guards here: 200 "ok" for any path below it."""

    def getChild(self, path: bytes, request: Any) -> Resource:  # noqa: N802
        return self

    def render(self, request: Any) -> bytes:
        return b"ok"


def api(access: AccessControl, clock: Clock | None = None, loopback: bool = False) -> Web:
    """A listener whose /api/ is behind the gate, as the service wires it."""
    clock = clock or Clock()
    root = Resource()
    root.putChild(b"api", ApiGate(_Ok(), access, clock, loopback, lambda: True))
    settings = WebSocketSettings(http_headers=security_headers(tls=False))
    return Web(root, clock=clock, settings=settings)


def _now(answer: Any) -> Any:
    """What a Deferred that must have fired already holds."""
    box: list[Any] = []
    answer.addBoth(box.append)
    assert box, "the answer was still pending"
    return box[0]


def get(web: Web, host: str = "127.0.0.1:61614", **headers: str) -> Answer:
    """GET /api/broker on ``web`` (its peer 192.0.2.5), answered at once."""
    return web.request("GET", "/api/broker", host=host, **headers)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("spec", "loopback"),
    [
        ("tcp:61614:interface=127.0.0.1", True),
        ("tcp6:61614:interface=\\:\\:1", True),
        ("ssl:61615:privateKey=k.pem:interface=localhost", True),
        ("unix:/run/stompbroker.sock", True),
        ("tcp:61614", False),
        ("tcp:61614:interface=0.0.0.0", False),
    ],
)
def test_loopback_listeners_are_recognised(spec: str, loopback: bool) -> None:
    """Only listeners bound to a loopback interface (or a UNIX socket) count as loopback."""
    assert is_loopback_endpoint(spec) is loopback


def test_without_users_only_loopback_listeners_and_hosts_are_allowed() -> None:
    """No users: a loopback listener serves requests for a loopback Host; others get 401."""
    access = AccessControl()
    on_loopback = api(access, loopback=True)
    assert get(on_loopback).body == b"ok"
    assert get(on_loopback, "localhost:61614").status == 200
    assert get(on_loopback, "attacker.example:61614").status == 401  # DNS rebinding
    assert get(on_loopback, authorization=_basic("any", "thing")).status == 200
    elsewhere = api(access, loopback=False)
    assert get(elsewhere).status == 401
    assert get(elsewhere, authorization=_basic("any", "thing")).status == 401
    assert access.throttle.failures == {}  # nothing was checked


def _users() -> AccessControl:
    cheap = 2**4
    return AccessControl(
        [
            User("ops", hash_password("secret", n=cheap), frozenset({"admins"})),
            User("app", hash_password("pw", n=cheap)),
        ],
        [
            Rule("admins", "/queue/>", frozenset({"admin"})),
            Rule("*", "/queue/>", frozenset({"read"})),
        ],
    )


def test_with_users_an_admins_basic_credentials_are_needed() -> None:
    """With users, HTTP Basic credentials of a user granted admin are needed, anywhere; a
    refusal is 401 with a Basic challenge (UTF-8)."""
    web = api(_users(), loopback=True)
    refused = get(web)
    assert refused.status == 401
    assert refused.headers["www-authenticate"] == 'basic realm="stompbroker", charset="UTF-8"'
    assert refused.headers["x-content-type-options"] == "nosniff"
    assert get(web, authorization=_basic("ops", "secret")).body == b"ok"
    assert get(web, authorization=_basic("app", "pw")).status == 401
    assert get(web, authorization=_basic("app", "pw")).status == 401  # remembered: not admin


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer xyz",
        "Basic !!!",
        "Basic " + base64.b64encode(b"ops").decode(),
        "Basic " + base64.b64encode(b"ops:\xff").decode(),
    ],
)
def test_credentials_that_are_not_basic_utf8_pairs_get_401(authorization: str) -> None:
    """Another scheme, bad base64, no colon, or a password that is not UTF-8: 401."""
    assert get(api(_users()), authorization=authorization).status == 401


def test_a_colon_in_the_password_is_the_passwords() -> None:
    """Basic splits user and password at the first colon."""
    access = AccessControl([User("a", hash_password("b:c", n=2**4))])
    assert get(api(access), authorization=_basic("a", "b:c")).status == 200


def test_a_wrong_password_makes_the_address_wait_before_its_next_check() -> None:
    """After a wrong password, even the right one is refused from that address for a while."""
    clock = Clock()
    web = api(AccessControl([User("ops", hash_password("secret", n=2**4))]), clock)
    assert get(web, authorization=_basic("ops", "guess")).status == 401
    assert get(web, authorization=_basic("ops", "secret")).status == 401
    clock.advance(1.5)
    assert get(web, authorization=_basic("ops", "secret")).status == 200


def test_a_stomp_login_failure_and_the_api_share_one_throttle() -> None:
    """A wrong STOMP passcode from an address puts that address under penalty for the API
    too (refused unchecked); a failed API check puts it under penalty for STOMP."""
    clock = Clock()
    access = AccessControl([User("ops", hash_password("secret", n=2**4))])
    web = api(access, clock)
    _now(access.login("ops", "guess", "192.0.2.5", clock))
    assert get(web, authorization=_basic("ops", "secret")).status == 401
    assert access.throttle.failures["192.0.2.5"][0] == 1  # refused unchecked: not counted
    clock.advance(1.0)
    assert get(web, authorization=_basic("ops", "guess")).status == 401
    assert access.throttle.waiting("192.0.2.5", clock.seconds(), "ops")
    later = access.login("ops", "secret", "192.0.2.5", clock)
    assert not later.called
    clock.advance(2.0)
    assert _now(later).good


def test_a_password_is_checked_off_the_reactor_and_then_remembered() -> None:
    """A new credential is checked through the access control's runner (the thread pool in
    the broker), and the API answers when it fires; known credentials answer at once."""
    pending: list[tuple[Deferred[bool], Any, tuple[Any, ...]]] = []

    def later(function: Any, *args: Any) -> Deferred[bool]:
        answer: Deferred[bool] = Deferred()
        pending.append((answer, function, args))
        return answer

    access = AccessControl([User("ops", hash_password("secret", n=2**4))], run=later)
    web = api(access)
    first = web.pending("GET", "/api/broker", authorization=_basic("ops", "secret"))
    assert first() is None
    ((answer, function, args),) = pending
    answer.callback(function(*args))  # the worker thread's result
    assert first().body == b"ok"
    assert get(web, authorization=_basic("ops", "secret")).body == b"ok"  # remembered
    assert len(pending) == 1
    assert web.pending("GET", "/api/broker", authorization=_basic("ops", "other"))() is None
    assert len(pending) == 2  # another password: checked


def test_good_credentials_are_remembered_across_the_api_and_metrics() -> None:
    """Gates sharing what they remember (a listener's /api/ and /metrics, every listener's)
    check a password once for all of them."""
    checks: list[Any] = []

    def later(function: Any, *args: Any) -> Deferred[bool]:
        checks.append(args)
        return succeed(function(*args))

    access = AccessControl([User("ops", hash_password("secret", n=2**4))], run=later)
    remembered, clock = RememberedLogins(), Clock()
    root = Resource()
    for name in (b"api", b"metrics"):
        root.putChild(name, ApiGate(_Ok(), access, clock, False, lambda: True, remembered))
    web = Web(root, clock=clock)
    credentials = _basic("ops", "secret")
    assert web.request("GET", "/api/broker", authorization=credentials).status == 200
    assert web.request("GET", "/metrics", authorization=credentials).status == 200
    assert len(checks) == 1
    clock.advance(CREDENTIALS_TTL)
    assert web.request("GET", "/metrics", authorization=credentials).status == 200
    assert len(checks) == 2  # forgotten after CREDENTIALS_TTL: checked again


def test_a_failed_api_login_is_logged() -> None:
    """A wrong password on the API is one info line naming the user and the address."""
    from twisted.logger import capturedLogs

    web = api(AccessControl([User("ops", hash_password("secret", n=2**4))]))
    with capturedLogs() as events:
        assert get(web, authorization=_basic("ops", "guess")).status == 401
    lines = [formatEvent(e) for e in events if e.get("log_namespace") == "stompbroker.management"]
    assert lines == ["management API: login failed for 'ops' from 192.0.2.5"]


def test_resident_memory_is_read_from_proc(tmp_path: Path) -> None:
    """VmRSS in kB becomes bytes; a missing file means unknown."""
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmRSS:\t  2048 kB\n")
    assert rss_bytes(str(status)) == 2048 * 1024
    assert rss_bytes(str(tmp_path / "missing")) is None


def test_the_api_can_be_turned_off(tmp_path: Path) -> None:
    """management.api: false answers 404 under /api/ and /metrics."""
    config = Config()
    config = replace(
        config,
        broker=replace(config.broker, data_dir=str(tmp_path), store="memory"),
        management=ManagementSection(api=False),
    )
    service = BrokerService(config, Clock(), [])
    entry = WebSocketListener("tcp:0:interface=127.0.0.1")
    web = Web(service.monitoring.http_resource(entry))
    assert web.request("GET", "/api/broker").status == 404
    assert web.request("GET", "/metrics").status == 404
    service.monitoring.reconfigure(replace(config, management=ManagementSection(api=True)))
    assert web.request("GET", "/api/broker").status == 200
    assert web.request("GET", "/metrics").status == 200


# -- JSON logs ----------------------------------------------------------------------------------


def test_json_log_lines_carry_time_level_namespace_message_and_fields() -> None:
    """Each event is one JSON line with the formatted message and the event's own fields."""
    stream = io.StringIO()
    log = Logger(namespace="stompbroker.connection", observer=JsonLogObserver(stream))
    log.info("connection {id} closed", id="c1", duration=1.5, thing=object())
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "info" and entry["namespace"] == "stompbroker.connection"
    assert entry["message"] == "connection c1 closed"
    assert entry["id"] == "c1" and entry["duration"] == 1.5
    assert entry["thing"].startswith("<object object")
    assert entry["time"].endswith("Z") and "T" in entry["time"]


def test_json_log_lines_carry_tracebacks() -> None:
    """A logged failure comes with its traceback."""
    stream = io.StringIO()
    log = Logger(namespace="x", observer=JsonLogObserver(stream))
    try:
        raise ValueError("bad")
    except ValueError:
        log.failure("it failed")
    entry = json.loads(stream.getvalue())
    assert entry["level"] == "critical" and "ValueError: bad" in entry["traceback"]


def test_legacy_events_without_a_level_are_written_too() -> None:
    """A twisted.python.log-style event (no log_level) becomes an info or error line."""
    entry = record({"message": ("hello", "world"), "isError": 1, "time": 0, "log_time": 0.0})
    assert entry["level"] == "error" and entry["message"] == "hello world"
    assert entry["time"] == "1970-01-01T00:00:00.000Z"


def test_the_observer_factory_appends_to_the_named_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """json_observer (twistd --logger's factory) writes to $STOMPBROKER_LOG_FILE if set."""
    path = tmp_path / "broker.jsonl"
    monkeypatch.setenv(FILE_VARIABLE, str(path))
    observer = json_observer()
    Logger(namespace="n", observer=observer).warn("careful")
    observer.stream.close()
    assert json.loads(path.read_text())["level"] == "warn"
