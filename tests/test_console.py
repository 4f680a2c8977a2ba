"""The web console's files on a WebSocket listener's plain-HTTP side (no sockets)."""

from __future__ import annotations

import re
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import h11
import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from stompbroker.config import Config, ManagementSection, WebSocketListener
from stompbroker.service import BrokerService
from stompbroker.transport import Console, HttpRequest, HttpResponse, WebSocketFactory
from stompbroker.transport._console import FILES, PATH_PLACEHOLDER

HOST = ((b"host", b"127.0.0.1:61614"),)
CONSOLE_DIR = resources.files("stompbroker").joinpath("console")


def _get(console: Console, target: str, method: str = "GET", headers: Any = HOST) -> HttpResponse:
    answer = console(HttpRequest(method, target, headers))
    assert isinstance(answer, HttpResponse), "the console answers at once"
    return answer


def _header(response: HttpResponse, name: bytes) -> str:
    values = [v.decode() for n, v in response.headers if n == name]
    assert len(values) == 1, response.headers
    return values[0]


def test_the_page_is_served_at_the_root_with_the_listeners_websocket_path() -> None:
    """GET / answers index.html as HTML, naming the listener's WebSocket path for console.js."""
    response = _get(Console("/stomp"), "/")
    assert response.status == 200
    assert response.content_type == "text/html; charset=utf-8"
    page = response.body.decode()
    assert '<meta name="stompbroker-websocket-path" content="/stomp">' in page
    assert PATH_PLACEHOLDER not in page
    assert '<script type="module" src="console.js"></script>' in page


@pytest.mark.parametrize(
    ("path", "name", "content_type"),
    [
        ("/console.js", "console.js", "text/javascript; charset=utf-8"),
        ("/stomp.js", "stomp.js", "text/javascript; charset=utf-8"),
        ("/console.css", "console.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "favicon.svg", "image/svg+xml"),
    ],
)
def test_each_file_is_served_with_its_content_type(path: str, name: str, content_type: str) -> None:
    """Every file of the console comes with its own content type, exactly as shipped."""
    response = _get(Console(), path)
    assert (response.status, response.content_type) == (200, content_type)
    assert response.body == CONSOLE_DIR.joinpath(name).read_bytes()


@pytest.mark.parametrize("path", [*FILES, "/index.html", "/?tab=peek"])
def test_answers_are_never_cached_and_carry_a_strict_policy(path: str) -> None:
    """Each answer says no-cache, nosniff, and a CSP allowing only this origin and its WebSocket."""
    response = _get(Console(), path)
    assert response.status == 200
    assert _header(response, b"cache-control") == "no-cache"
    assert _header(response, b"x-content-type-options") == "nosniff"
    policy = dict(
        [*directive.split(" ", 1), ""][:2]
        for directive in _header(response, b"content-security-policy").split("; ")
    )
    assert policy == {
        "default-src": "'none'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self'",
        "connect-src": "'self' ws://127.0.0.1:61614 wss://127.0.0.1:61614",
        "base-uri": "'none'",
        "form-action": "'none'",
        "frame-ancestors": "'none'",
    }


@pytest.mark.parametrize("host", [b"evil; script-src *", b"a b", b"x'y", b""])
def test_a_strange_host_is_not_repeated_in_the_policy(host: bytes) -> None:
    """A Host that is not a plain host[:port] leaves connect-src at 'self' alone."""
    response = _get(Console(), "/", headers=((b"host", host),))
    policy = _header(response, b"content-security-policy")
    assert "connect-src 'self';" in policy
    assert "*" not in policy


def test_the_websocket_path_is_escaped_in_the_page() -> None:
    """A path with HTML's special characters cannot break out of the meta tag."""
    page = _get(Console('/ws"><script>x</script>'), "/").body.decode()
    assert 'content="/ws&quot;&gt;&lt;script&gt;x&lt;/script&gt;"' in page
    assert "<script>x" not in page


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_get_405(method: str) -> None:
    """The console's paths answer GET (and HEAD) only: anything else gets 405 with Allow."""
    response = _get(Console(), "/console.js", method)
    assert response.status == 405
    assert _header(response, b"allow") == "GET, HEAD"


def test_head_is_answered_like_get() -> None:
    """HEAD gets the GET answer (the listener leaves the body out on the wire)."""
    assert _get(Console(), "/", "HEAD") == _get(Console(), "/")


@pytest.mark.parametrize("path", ["/other", "/console.js/x", "/stompbroker/console/stomp.js", "//"])
def test_anything_else_goes_to_the_next_handler(path: str) -> None:
    """A path that is not the console's is the fallback's: 404 by default."""
    assert _get(Console(), path).status == 404
    teapot = Console(fallback=lambda request: HttpResponse(418))
    assert _get(teapot, path).status == 418


def _service(tmp_path: Path, api: bool = True) -> BrokerService:
    config = Config()
    config = replace(
        config,
        broker=replace(config.broker, data_dir=str(tmp_path), store="memory"),
        management=ManagementSection(api=api),
    )
    return BrokerService(config, Clock(), [])


@pytest.mark.parametrize("api", [True, False])
def test_every_websocket_listener_serves_the_console_beside_the_api(
    tmp_path: Path, api: bool
) -> None:
    """The service's HTTP handler serves the console at /, the API at /api/ (unless turned
    off), and 404 for the rest."""
    entry = WebSocketListener("tcp:0:interface=127.0.0.1", "/stomp")
    handler = _service(tmp_path, api).monitoring.http_handler(entry)

    def answer(target: str) -> HttpResponse:
        response = handler(HttpRequest("GET", target, HOST))
        assert isinstance(response, HttpResponse), "no password to check: answered at once"
        return response

    page = answer("/")
    assert page.status == 200 and b'content="/stomp"' in page.body
    assert answer("/api/broker").status == (200 if api else 404)
    assert answer("/nothing").status == 404


def test_the_page_goes_out_whole_over_http() -> None:
    """Through a listener's protocol, GET / gets 200 with the page, its length and headers."""
    unused: Any = None  # no upgrade here: no session is ever made
    factory = WebSocketFactory(lambda transport, peer: unused, Clock(), http_handler=Console())
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:61614\r\n\r\n")
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.receive_data(transport.value())
    response = client.next_event()
    assert isinstance(response, h11.Response) and response.status_code == 200
    headers = dict(response.headers)
    assert headers[b"cache-control"] == b"no-cache"
    assert b"content-security-policy" in headers
    data = client.next_event()
    assert isinstance(data, h11.Data) and data.data.startswith(b"<!doctype html>")
    assert transport.disconnecting


# -- what the shipped files may do ------------------------------------------------------------

_SOURCES = [
    "index.html",
    "console.js",
    "tables.js",
    "charts.js",
    "admin.js",
    "stomp.js",
    "console.css",
]


@pytest.mark.parametrize("name", _SOURCES)
def test_the_console_loads_nothing_from_elsewhere(name: str) -> None:
    """No file names another site: no http(s) URL, no protocol-relative one, no @import."""
    text = CONSOLE_DIR.joinpath(name).read_text()
    assert re.findall(r"https?://|[\"'(]//|@import", text) == []


@pytest.mark.parametrize("name", ["console.js", "tables.js", "charts.js", "admin.js", "stomp.js"])
def test_the_code_never_turns_data_into_html_or_code(name: str) -> None:
    """The scripts put text into the page with textContent only: no innerHTML and the like."""
    text = CONSOLE_DIR.joinpath(name).read_text()
    forbidden = r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function"
    assert re.findall(forbidden, text) == []


def test_the_package_declares_the_console_files() -> None:
    """pyproject's package data covers every file the console serves."""
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    globs = re.search(r"stompbroker = \[(.*?)\]", pyproject)
    assert globs is not None
    patterns = [g.strip().strip('"') for g in globs.group(1).split(",")]
    for name, _ in FILES.values():
        assert any(Path("console", name).match(p) for p in patterns), name
