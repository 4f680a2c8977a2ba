"""Logins, access rules and TLS with real clients: stomp.py over TCP and TLS, and wss://.

The TLS tests make a self-signed certificate for 127.0.0.1 in ``tmp_path`` (with the
``cryptography`` package that ``twisted[tls]`` brings) and verify it as clients should.
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import websocket
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.threads import blockingCallFromThread

from stompbroker.config import Config, WebSocketListener, parse
from stompbroker.core import hash_password, verify_password
from stompbroker.service import BrokerService

from .conftest import TIMEOUT, Client, Starter, _ended, _TrackingEndpoint, poll, reactor

SECURITY = f"""
destinations:
  - name: /queue/orders.>
security:
  users:
    - name: alice
      password_hash: '{hash_password("alice-pw", n=16)}'
      groups: [producers]
    - name: bob
      password_hash: '{hash_password("bob-pw", n=16)}'
      groups: [consumers]
  rules:
    - principal: producers
      destinations: /queue/orders.>
      permissions: [write]
    - principal: consumers
      destinations: /queue/orders.>
      permissions: [read]
"""


def _config() -> Config:
    return parse(SECURITY, "security-test.yaml")


def _connect(client: Client, login: str | None, passcode: str | None) -> Any:
    """CONNECT with credentials; the CONNECTED frame, or None after an ERROR."""
    client.conn.connect(login, passcode, wait=False)
    frames = client.frames
    frames.wait(lambda: bool(frames.connected or frames.errors), "CONNECTED or ERROR")
    return frames.connected[0] if frames.connected else None


def _refused(client: Client, login: str | None, passcode: str | None) -> Any:
    """CONNECT that must be refused: the ERROR, once the broker closed the connection."""
    assert _connect(client, login, passcode) is None
    client.frames.wait(lambda: client.frames.disconnected, "the connection to close")
    return client.frames.errors[0]


def test_users_log_in_and_rules_apply(broker_with: Starter) -> None:
    """Logged-in stomp.py clients send and receive; a denied SEND gets ERROR and a close."""
    running = broker_with(_config())
    bob = Client(running.port, "1.2")
    assert _connect(bob, "bob", "bob-pw") is not None
    bob.subscribe("/queue/orders.eu")
    alice = Client(running.port, "1.2")
    assert _connect(alice, "alice", "alice-pw") is not None
    alice.send("/queue/orders.eu", "order 1", receipt=True)
    [message] = bob.wait_messages(1)
    assert message.body == "order 1"
    alice.conn.send("/queue/payroll", "raise")
    alice.frames.wait(lambda: bool(alice.frames.errors), "an ERROR")
    error = alice.frames.errors[0]
    assert error.headers["message"] == "access denied to /queue/payroll"
    alice.frames.wait(lambda: alice.frames.disconnected, "the connection to close")
    bob.disconnect()


def test_bad_credentials_get_one_error_after_a_delay(broker_with: Starter) -> None:
    """Unknown login, wrong passcode: one ERROR after >= 1 s; no login: 'login required'."""
    running = broker_with(_config())
    errors = []
    for login, passcode in (("mallory", "alice-pw"), ("alice", "bob-pw")):
        started = time.monotonic()
        error = _refused(Client(running.port, "1.2"), login, passcode)
        assert time.monotonic() - started >= 0.9
        errors.append((error.headers.get("message"), error.body.strip()))
    assert errors[0] == errors[1] == ("login failed", "the login or the passcode is wrong")
    anonymous = _refused(Client(running.port, "1.2"), None, None)
    assert anonymous.headers["message"] == "login required"
    running.assert_idle()


# -- TLS ---------------------------------------------------------------------------------


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class TlsBroker:
    """A broker with a STOMP-over-TLS listener and a wss:// listener, both on 127.0.0.1."""

    service: BrokerService
    stomp: _TrackingEndpoint
    wss: _TrackingEndpoint
    cert: Path

    def port(self, endpoint: _TrackingEndpoint) -> int:
        """The port ``endpoint`` listens on."""
        return int(endpoint.port.getHost().port)

    def open_connections(self) -> int:
        """Connections of either listener the broker has not seen end."""
        return int(blockingCallFromThread(reactor, self._count_open))

    def _count_open(self) -> int:
        every = [*self.stomp.protocols, *self.wss.protocols]
        return sum(1 for p in every if not _ended(p))

    def _stop(self) -> Deferred[Any]:
        stopped: Deferred[Any] = self.service.stopService()
        for protocol in [*self.stomp.protocols, *self.wss.protocols]:
            if not _ended(protocol):
                protocol.transport.abortConnection()
        return stopped


def _start_tls(config: Config, data: Path, cert: Path, key: Path) -> Any:
    """Start the broker (on the reactor thread); a Deferred firing with it once it listens."""
    spec = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    stomp = _TrackingEndpoint(serverFromString(reactor, spec))
    wss = _TrackingEndpoint(serverFromString(reactor, spec))
    config = replace(config, broker=replace(config.broker, data_dir=str(data)))
    service = BrokerService(config, reactor, [stomp], [(wss, WebSocketListener(spec))])
    service.startService()
    started: Deferred[Any] = service.started
    return started.addCallback(lambda _: TlsBroker(service, stomp, wss, cert))


@pytest.fixture
def tls_broker(running_reactor: Any, tmp_path: Path) -> Iterator[TlsBroker]:
    """A broker with users and rules, listening for STOMP over TLS and for wss://."""
    cert, key = _certificate(tmp_path)
    running: TlsBroker = blockingCallFromThread(
        reactor, _start_tls, _config(), tmp_path / "data", cert, key
    )
    try:
        yield running
    finally:
        blockingCallFromThread(reactor, running._stop)
        poll(lambda: running.open_connections() == 0, "the broker's connections to close")


def test_stomppy_logs_in_over_tls(tls_broker: TlsBroker) -> None:
    """stomp.py verifies the broker's certificate, logs in over TLS, sends and receives."""
    port = tls_broker.port(tls_broker.stomp)
    clients = []
    for login, password in (("bob", "bob-pw"), ("alice", "alice-pw")):
        client = Client(port, "1.2")
        client.conn.set_ssl(for_hosts=[("127.0.0.1", port)], ca_certs=str(tls_broker.cert))
        assert _connect(client, login, password) is not None
        clients.append(client)
    bob, alice = clients
    bob.subscribe("/queue/orders.tls")
    alice.send("/queue/orders.tls", "over TLS", receipt=True)
    [message] = bob.wait_messages(1)
    assert message.body == "over TLS"
    alice.disconnect()
    bob.disconnect()


def _frame(command: str, headers: dict[str, str], body: str = "") -> str:
    lines = [command, *(f"{k}:{v}" for k, v in headers.items())]
    return "\n".join(lines) + "\n\n" + body + "\0"


def _read_frame(socket: Any) -> tuple[str, dict[str, str], str]:
    """The next frame of a WebSocket message (heart-beats skipped)."""
    while True:
        text = socket.recv()
        text = text.decode() if isinstance(text, bytes) else text
        if text.strip("\r\n"):
            break
    head, _, body = text.lstrip("\r\n").partition("\n\n")
    command, *lines = head.split("\n")
    return command, dict(line.split(":", 1) for line in lines), body.rstrip("\0")


def test_stomp_over_wss_with_a_login(tls_broker: TlsBroker) -> None:
    """Over verified wss:// a client logs in, receives, is denied a SEND, or refused a login."""
    url = f"wss://127.0.0.1:{tls_broker.port(tls_broker.wss)}/ws"
    sslopt = {"ca_certs": str(tls_broker.cert)}
    ws = websocket.create_connection(url, TIMEOUT, subprotocols=["v12.stomp"], sslopt=sslopt)
    try:
        ws.send(_frame("CONNECT", {"accept-version": "1.2", "login": "bob", "passcode": "bob-pw"}))
        assert _read_frame(ws)[0] == "CONNECTED"
        subscribe = {"destination": "/queue/orders.wss", "id": "1", "receipt": "r"}
        ws.send(_frame("SUBSCRIBE", subscribe))
        assert _read_frame(ws)[0] == "RECEIPT"
        port = tls_broker.port(tls_broker.stomp)
        alice = Client(port, "1.2")
        alice.conn.set_ssl(for_hosts=[("127.0.0.1", port)], ca_certs=str(tls_broker.cert))
        assert _connect(alice, "alice", "alice-pw") is not None
        alice.send("/queue/orders.wss", "to the web page", receipt=True)
        alice.disconnect()
        command, _, body = _read_frame(ws)
        assert (command, body) == ("MESSAGE", "to the web page")
        ws.send(_frame("SEND", {"destination": "/queue/orders.wss"}, "denied"))
        command, headers, _ = _read_frame(ws)
        assert (command, headers["message"]) == ("ERROR", "access denied to /queue/orders.wss")
    finally:
        ws.close()
    ws = websocket.create_connection(url, TIMEOUT, subprotocols=["v12.stomp"], sslopt=sslopt)
    try:
        ws.send(_frame("CONNECT", {"accept-version": "1.2", "login": "bob", "passcode": "x"}))
        command, headers, _ = _read_frame(ws)
        assert (command, headers["message"]) == ("ERROR", "login failed")
    finally:
        ws.close()


# -- the hash command ----------------------------------------------------------------------


def test_python_m_stompbroker_passwd_prints_a_hash() -> None:
    """`python -m stompbroker.passwd` reads the password from stdin and prints its hash."""
    result = subprocess.run(
        [sys.executable, "-m", "stompbroker.passwd"],
        input="piped secret\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert verify_password("piped secret", result.stdout.strip())
