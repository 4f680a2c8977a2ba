"""``stompbroker-admin``: look at a running broker and act on it, through its management API.

Standard library only. It talks to the JSON API of a WebSocket listener (``--url``, or
``STOMPBROKER_URL``; ``http://127.0.0.1:61614`` by default). With ``--user`` (or
``STOMPBROKER_USER``) it sends HTTP Basic credentials; the password comes from
``STOMPBROKER_PASSWORD``, else it is asked for.

Destinations are named by address (``/queue/orders``, ``/topic/prices.>``,
``/remote-temp-queue/ID``) or as ``KIND:NAME`` (``durable:CLIENT_ID:SUBSCRIPTION``).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode
from urllib.request import Request, urlopen

DEFAULT_URL = "http://127.0.0.1:61614"
#: Seconds one request may take.
TIMEOUT = 30.0
#: ``replay`` asks again while messages remain (paged ones are loaded meanwhile), this often.
REPLAY_ROUNDS = 1000
REPLAY_PAUSE = 0.2

_ADDRESS_KINDS = {
    "/queue/": "queue",
    "/topic/": "topic",
    "/remote-temp-queue/": "temp-queue",
    "/remote-temp-topic/": "temp-topic",
}
_KINDS = ("queue", "topic", "durable", "temp-queue", "temp-topic")
_PLURALS = {
    "queue": "queues",
    "topic": "topics",
    "durable": "durable subscriptions",
    "temp-queue": "temporary queues",
    "temp-topic": "temporary topics",
}


class AdminError(Exception):
    """A failure to report in one line (exit status 1)."""


class Client:
    """The management API at ``url``, with optional HTTP Basic credentials."""

    def __init__(self, url: str, user: str | None = None, password: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.authorization: str | None = None
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")
            self.authorization = f"Basic {token}"

    def call(self, method: str, path: str, query: dict[str, Any] | None = None) -> Any:
        """The decoded JSON answer to ``method path``; AdminError when it fails."""
        url = self.url + path + (f"?{urlencode(query)}" if query else "")
        request = Request(url, method=method, data=b"" if method == "POST" else None)
        if self.authorization is not None:
            request.add_header("Authorization", self.authorization)
        try:
            with urlopen(request, timeout=TIMEOUT) as answer:
                return json.loads(answer.read())
        except HTTPError as exc:
            raise AdminError(_http_error(exc)) from None
        except URLError as exc:
            raise AdminError(f"cannot reach {self.url}: {exc.reason}") from None
        except (OSError, ValueError) as exc:
            raise AdminError(f"{self.url}: {exc}") from None

    def get(self, path: str, **query: Any) -> Any:
        return self.call("GET", path, query or None)

    def post(self, path: str, **query: Any) -> Any:
        return self.call("POST", path, query or None)


def _http_error(exc: HTTPError) -> str:
    try:
        message = json.loads(exc.read()).get("error") or exc.reason
    except (ValueError, AttributeError, OSError):
        message = exc.reason
    if exc.code == 401:
        return f"{message} (give --user, an admin user, and its password)"
    if exc.code == 404 and "not found" in str(message).lower():
        return f"{exc.url}: not found (is the management API on? management.api)"
    return f"{message} (HTTP {exc.code})"


def destination_path(destination: str) -> str:
    """The API path of a destination given as an address or as ``KIND:NAME``."""
    for prefix, kind in _ADDRESS_KINDS.items():
        if destination.startswith(prefix) and len(destination) > len(prefix):
            return f"/api/destinations/{kind}/{quote(destination[len(prefix) :], safe='')}"
    kind, colon, name = destination.partition(":")
    if colon and kind in _KINDS and name:
        return f"/api/destinations/{kind}/{quote(name, safe='')}"
    raise AdminError(
        f"{destination!r}: expected /queue/NAME, /topic/NAME, /remote-temp-queue/ID"
        " or KIND:NAME (e.g. durable:CLIENT_ID:SUBSCRIPTION)"
    )


# -- formatting ------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An aligned text table: numbers to the right, text to the left."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    numeric = [bool(rows) and all(_is_number(row[i]) for row in rows) for i in range(len(headers))]
    lines = []
    for row in [list(headers), *cells]:
        parts = [
            c.rjust(w) if numeric[i] else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def size(count: float | None) -> str:
    """Bytes in a readable unit."""
    if count is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:,.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return ""  # not reached


def duration(seconds: float | None) -> str:
    """A duration: ``850 µs``, ``12 ms``, ``3.2 s``, ``1h 02m``."""
    if seconds is None:
        return "-"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours:02d}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {int(seconds) % 60:02d}s"


def format_status(broker: dict[str, Any]) -> str:
    """``status``: the broker as a whole, one topic per line."""
    conn, dest, msg = broker["connections"], broker["destinations"], broker["messages"]
    store = broker["store"]
    rates = msg["rates"]
    lines = [
        f"{broker['name']} {broker['version']}, up {duration(broker['uptime_s'])}",
        f"connections   {conn['open']:,} open, {conn['opened']:,} since start;"
        f" {size(conn['bytes_in'])} in, {size(conn['bytes_out'])} out",
        "destinations  " + ", ".join(f"{dest[k]:,} {_PLURALS[k]}" for k in _KINDS if k in dest),
        f"messages      {msg['enqueued']:,} enqueued ({rates['enqueued']:,.1f}/s),"
        f" {msg['delivered']:,} delivered ({rates['delivered']:,.1f}/s),"
        f" {msg['acknowledged']:,} acknowledged",
        f"              {msg['expired']:,} expired, {msg['dead_lettered']:,} dead-lettered,"
        f" {msg['dropped']:,} dropped, {msg['purged']:,} purged",
        f"memory        {size(broker['memory']['rss_bytes'])} resident",
    ]
    if store["kind"] == "none":
        lines.append("store         none (memory only)")
    else:
        fsync = store["fsync"] or {}
        lines.append(
            f"store         {store['kind']}, {size(store['size_bytes'])}; {store['batches']:,}"
            f" batches, {fsync.get('count', 0):,} fsyncs (p50 {duration(fsync.get('p50_s'))},"
            f" p99 {duration(fsync.get('p99_s'))}, max {duration(fsync.get('max_s'))})"
        )
    cluster = broker.get("cluster")
    if cluster is not None:
        names = ", ".join(node["name"] for node in cluster["nodes"]) or "none read yet"
        lines.append(
            f"cluster       node {cluster['node']} (incarnation {cluster['incarnation']});"
            f" {len(cluster['nodes'])} live: {names}"
        )
    return "\n".join(lines)


def format_destinations(destinations: list[dict[str, Any]]) -> str:
    """``destinations``: one aligned row per destination."""
    headers = (
        *("KIND", "DESTINATION", "DEPTH", "IN FLIGHT", "CONSUMERS", "PRODUCERS"),
        *("IN/S", "OUT/S", "ENQUEUED", "DELIVERED", "DEAD", "P99 WAIT"),
    )
    rows = []
    for d in destinations:
        wait = (d["latency"]["enqueue_to_delivery"] or {}).get("p99_s")
        shown = d["address"] if d["kind"] != "durable" else d["name"]
        rows.append(
            (
                d["kind"] if d["active"] else f"({d['kind']})",
                shown,
                d["depth"],
                d["in_flight"],
                d["consumers"],
                d["producers"],
                d["rates"]["enqueued"],
                d["rates"]["delivered"],
                d["enqueued"],
                d["delivered"],
                d["dead_lettered"] + d["dropped"],
                duration(wait) if wait is not None else "-",
            )
        )
    return table(headers, rows) if rows else "no destinations"


def format_connections(connections: list[dict[str, Any]]) -> str:
    """``connections``: one aligned row per open connection."""
    headers = ("ID", "PEER", "TRANSPORT", "USER", "STOMP", "SUBS", "IN", "OUT", "UP")
    rows = [
        (
            c["id"],
            c["peer"],
            c["transport"],
            c["user"] or "-",
            c["version"] or "-",
            len(c["subscriptions"]),
            size(c["bytes_in"]),
            size(c["bytes_out"]),
            duration(c["connected_for_s"]),
        )
        for c in connections
    ]
    return table(headers, rows) if rows else "no connections"


# -- commands --------------------------------------------------------------------------


def _status(client: Client, args: argparse.Namespace) -> Any:
    return client.get("/api/broker"), format_status


def _destinations(client: Client, args: argparse.Namespace) -> Any:
    query = {"kind": args.kind} if args.kind else {}
    found = client.get("/api/destinations", **query)["destinations"]
    return found, format_destinations


def _connections(client: Client, args: argparse.Namespace) -> Any:
    return client.get("/api/connections")["connections"], format_connections


def _purge(client: Client, args: argparse.Namespace) -> Any:
    done = client.post(destination_path(args.destination) + "/purge")
    return done, lambda d: f"purged {d['purged']:,} message(s) from {args.destination}"


def _delete(client: Client, args: argparse.Namespace) -> Any:
    done = client.post(destination_path(args.destination) + "/delete")
    return done, lambda d: f"deleted {args.destination} ({d['messages']:,} message(s))"


def _replay(client: Client, args: argparse.Namespace) -> Any:
    path = destination_path(args.destination) + "/replay"
    total = {"replayed": 0, "skipped": 0, "failed": 0, "remaining": 0}
    idle = 0
    for _ in range(REPLAY_ROUNDS):
        left = args.limit - total["replayed"] if args.limit else 0
        done = client.post(path, **({"limit": left} if left else {}))
        total["replayed"] += done["replayed"]
        # Skipped and failed messages stay: each round sees them again.
        total["skipped"], total["failed"] = done["skipped"], done["failed"]
        total["remaining"] = done["remaining"]
        idle = 0 if done["replayed"] else idle + 1
        finished = bool(args.limit) and total["replayed"] >= args.limit
        if finished or done["remaining"] <= done["skipped"] + done["failed"] or idle > 3:
            break
        time.sleep(REPLAY_PAUSE)  # paged-out dead letters load meanwhile
    return (
        total,
        lambda d: (
            f"replayed {d['replayed']:,} message(s) from {args.destination};"
            f" {d['skipped']:,} skipped (no original-destination), {d['failed']:,} failed,"
            f" {d['remaining']:,} still there"
        ),
    )


def _close(client: Client, args: argparse.Namespace) -> Any:
    done = client.post(f"/api/connections/{quote(args.connection, safe='')}/close")
    return done, lambda d: f"closed connection {args.connection}"


Command = Callable[[Client, argparse.Namespace], Any]


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = argparse.ArgumentParser(
        prog="stompbroker-admin",
        description="Look at a running stompbroker and act on it through its management API.",
        epilog="Destinations: /queue/NAME, /topic/NAME, /remote-temp-queue/ID, or KIND:NAME"
        " (durable:CLIENT_ID:SUBSCRIPTION).",
    )
    top.add_argument(
        "--url",
        default=os.environ.get("STOMPBROKER_URL", DEFAULT_URL),
        help="a WebSocket listener of the broker (env STOMPBROKER_URL; default %(default)s)",
    )
    top.add_argument(
        "--user",
        default=os.environ.get("STOMPBROKER_USER"),
        help="an admin user (env STOMPBROKER_USER); the password comes from"
        " STOMPBROKER_PASSWORD, else it is asked for",
    )
    top.add_argument("--json", action="store_true", help="print the API's JSON answer")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, function: Command, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(function=function)
        return sub

    command("status", _status, "the broker: connections, messages, memory, store")
    listing = command("destinations", _destinations, "every destination, as a table")
    listing.add_argument("--kind", choices=_KINDS, help="only destinations of this kind")
    command("queues", _destinations, "every queue, as a table").set_defaults(kind="queue")
    command("connections", _connections, "every open connection, as a table")
    command("purge", _purge, "drop the messages waiting in a queue").add_argument("destination")
    command("delete", _delete, "delete a destination nobody consumes from").add_argument(
        "destination"
    )
    replay = command("replay", _replay, "send dead letters back to their original destination")
    replay.add_argument("destination", nargs="?", default="/queue/DLQ")
    replay.add_argument("--limit", type=int, default=0, help="replay at most this many")
    command("close", _close, "close a connection (with an ERROR frame)").add_argument(
        "connection", help="its id (the connections table's ID)"
    )
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; 0 on success, 1 when it failed (the reason on stderr)."""
    args = parser().parse_args(argv)
    password = None
    if args.user is not None:
        password = os.environ.get("STOMPBROKER_PASSWORD")
        if password is None:
            password = getpass.getpass(f"password for {args.user}: ")
    client = Client(args.url, args.user, password)
    try:
        data, formatter = args.function(client, args)
    except AdminError as exc:
        _fail(str(exc))
    print(json.dumps(data, indent=2) if args.json else formatter(data))
    return 0


def _fail(message: str) -> NoReturn:
    print(f"stompbroker-admin: {message}", file=sys.stderr)
    raise SystemExit(1)


if __name__ == "__main__":
    raise SystemExit(main())
