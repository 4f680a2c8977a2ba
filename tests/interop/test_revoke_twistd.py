"""Revocation through a real reload: ``twistd stompbroker --config FILE``, stomp.py clients,
the file rewritten and SIGHUP sent, as an operator cutting off a leaked password or a partner.
"""

from __future__ import annotations

import signal
from pathlib import Path

from stompbroker.core import hash_password

from .conftest import Client
from .test_twistd import free_port, kill_twistd, spawn_twistd

HASHES = {name: hash_password(f"{name}-pw", n=16) for name in ("mallory", "dave", "bob", "carol")}


def _config(port: int, users: dict[str, str], rules: str) -> str:
    listed = "".join(
        f"    - {{name: {name}, password_hash: '{hashed}'}}\n" for name, hashed in users.items()
    )
    return (
        f"listeners:\n  stomp: ['tcp:{port}:interface=127.0.0.1']\n"
        "broker: {store: memory}\n"
        "destinations:\n  - {name: /queue/orders.>}\n"
        f"security:\n  users:\n{listed}  rules:\n{rules}"
    )


def _rule(principal: str, *permissions: str) -> str:
    granted = ", ".join(permissions)
    return (
        f"    - {{principal: {principal}, destinations: /queue/orders.>,"
        f" permissions: [{granted}]}}\n"
    )


def _logged_in(port: int, name: str) -> Client:
    client = Client(port, "1.2")
    client.conn.connect(name, f"{name}-pw", wait=False)
    frames = client.frames
    frames.wait(lambda: bool(frames.connected or frames.errors), f"CONNECTED for {name}")
    assert frames.connected, [e.headers for e in frames.errors]
    return client


def test_sighup_ends_revoked_connections_at_once(tmp_path: Path) -> None:
    """After SIGHUP: a removed user's and a changed password's connections get ERROR
    'credentials revoked' and close; a subscriber whose read was revoked gets ERROR 'access
    revoked to DEST' and its unacknowledged message goes to another consumer; an unaffected
    client goes on sending and receiving."""
    port = free_port()
    path = tmp_path / "broker.yaml"
    everyone = _rule("mallory", "read") + _rule("dave", "read") + _rule("bob", "read")
    everyone += _rule("carol", "read", "write")
    path.write_text(_config(port, HASHES, everyone))
    process, output = spawn_twistd("--config", str(path), cwd=tmp_path)
    try:
        output.wait_for(f"starting on {port}")
        mallory, dave, bob, carol = (
            _logged_in(port, name) for name in ("mallory", "dave", "bob", "carol")
        )
        mallory.subscribe("/queue/orders.leak")
        dave.subscribe("/queue/orders.leak")
        bob.subscribe("/queue/orders.eu", ack="client")
        carol.send("/queue/orders.eu", "order 1", receipt=True)
        [held] = bob.wait_messages(1)
        assert held.body == "order 1"
        carol.subscribe("/queue/orders.eu")

        users = {"dave": hash_password("new-pw", n=16), "bob": HASHES["bob"]}
        users["carol"] = HASHES["carol"]
        path.write_text(_config(port, users, _rule("carol", "read", "write")))
        process.send_signal(signal.SIGHUP)
        output.wait_for("configuration reloaded")

        removed = mallory.error("credentials revoked")
        assert removed.body.strip() == "user 'mallory' was removed"
        changed = dave.error("credentials revoked")
        assert changed.body.strip() == "the password of user 'dave' changed"
        cut_off = bob.error("access revoked to /queue/orders.eu")
        assert (
            cut_off.body.strip() == "user 'bob' no longer has read permission on /queue/orders.eu"
        )
        [back] = carol.wait_messages(1)
        assert back.body == "order 1"
        carol.send("/queue/orders.eu", "order 2", receipt=True)
        carol.frames.wait(lambda: len(carol.frames.messages) == 2, "order 2")
        assert carol.is_open
        output.wait_for("closed on reload: access revoked to /queue/orders.eu")
        assert output.text.count("closed on reload") == 3, output.text
        carol.disconnect()
    finally:
        kill_twistd(process, output)
