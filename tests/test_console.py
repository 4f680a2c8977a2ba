"""The web console's files on a WebSocket listener's plain-HTTP side (no sockets)."""

from __future__ import annotations

import re
from dataclasses import replace
from importlib import resources
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from stompbroker.config import Config, ManagementSection, WebSocketListener
from stompbroker.service import BrokerService
from stompbroker.transport import Console
from stompbroker.transport._console import FILES, PATH_PLACEHOLDER
from tests.web import Answer, Web

CONSOLE_DIR = resources.files("stompbroker").joinpath("console")


def _get(console: Console, target: str, method: str = "GET", **headers: str) -> Answer:
    return Web(console).request(method, target, **headers)


def test_the_page_is_served_at_the_root_with_the_listeners_websocket_path() -> None:
    """GET / answers index.html as HTML, naming the listener's WebSocket path for console.js."""
    response = _get(Console("/stomp"), "/")
    assert response.status == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.body.decode()
    assert '<meta name="stompbroker-websocket-path" content="/stomp">' in page
    assert PATH_PLACEHOLDER not in page
    assert '<script type="module" src="console.js"></script>' in page
    assert response.headers["content-length"] == str(len(response.body))


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
    assert (response.status, response.headers["content-type"]) == (200, content_type)
    assert response.body == CONSOLE_DIR.joinpath(name).read_bytes()


@pytest.mark.parametrize("path", [*FILES, "/index.html", "/?tab=peek"])
def test_answers_are_never_cached_and_carry_a_strict_policy(path: str) -> None:
    """Each answer says no-cache, nosniff, and a CSP allowing only this origin and its WebSocket."""
    response = _get(Console(), path)
    assert response.status == 200
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"
    policy = dict(
        [*directive.split(" ", 1), ""][:2]
        for directive in response.headers["content-security-policy"].split("; ")
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


@pytest.mark.parametrize("host", ["evil; script-src *", "a b", "x'y", ""])
def test_a_strange_host_is_not_repeated_in_the_policy(host: str) -> None:
    """A Host that is not a plain host[:port] leaves connect-src at 'self' alone."""
    policy = _get(Console(), "/", host=host).headers["content-security-policy"]
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
    assert response.headers["allow"] == "GET, HEAD"


def test_head_is_answered_like_get_without_the_body() -> None:
    """HEAD gets the GET answer's status and headers, and no body."""
    head, get = _get(Console(), "/", "HEAD"), _get(Console(), "/")
    assert (head.status, head.body) == (200, b"")
    assert head.headers["content-length"] == get.headers["content-length"]
    assert head.headers["etag"] == get.headers["etag"]


@pytest.mark.parametrize("path", ["/other", "/console.js/x", "/stompbroker/console/stomp.js", "//"])
def test_anything_else_is_not_found(path: str) -> None:
    """A path that is not the console's (nor the API's, when it is put beside) is 404."""
    response = _get(Console(), path)
    assert (response.status, response.body) == (404, b"not found\n")


@pytest.mark.parametrize("path", ["/", "/console.js"])
def test_a_conditional_get_of_an_unchanged_file_is_304(path: str) -> None:
    """If-None-Match with the ETag, or If-Modified-Since with Last-Modified: 304, no body."""
    first = _get(Console(), path)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    for headers in ({"if_none_match": etag}, {"if_modified_since": modified}):
        again = _get(Console(), path, **headers)
        assert (again.status, again.body) == (304, b""), headers
        assert again.headers["etag"] == etag
    assert _get(Console(), path, if_none_match='W/"other"').status == 200


def test_the_pages_etag_follows_the_websocket_path() -> None:
    """index.html differs by listener (its WebSocket path): so does its ETag."""
    first = _get(Console("/ws"), "/").headers["etag"]
    assert _get(Console("/stomp"), "/").headers["etag"] != first
    assert _get(Console("/stomp"), "/", if_none_match=first).status == 200


def test_a_byte_range_is_served_as_is() -> None:
    """Range: bytes=0-9 gets 206 with those ten bytes, not gzip-encoded."""
    response = _get(Console(), "/stomp.js", range="bytes=0-9", accept_encoding="gzip")
    assert response.status == 206
    assert response.headers["content-range"].startswith("bytes 0-9/")
    assert "content-encoding" not in response.headers
    assert response.body == CONSOLE_DIR.joinpath("stomp.js").read_bytes()[:10]


def test_files_are_gzipped_for_a_browser_that_accepts_it() -> None:
    """Accept-Encoding: gzip gets Content-Encoding: gzip; the file decompresses whole."""
    response = _get(Console(), "/console.js", accept_encoding="gzip, deflate")
    assert response.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in response.headers["vary"]
    assert len(response.body) < len(response.decoded())
    assert response.decoded() == CONSOLE_DIR.joinpath("console.js").read_bytes()
    assert "content-encoding" not in _get(Console(), "/console.js").headers


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
    """The service's resource serves the console at /, the API at /api/ (unless turned
    off), and 404 for the rest."""
    entry = WebSocketListener("tcp:0:interface=127.0.0.1", "/stomp")
    web = Web(_service(tmp_path, api).monitoring.http_resource(entry))
    page = web.request("GET", "/")
    assert page.status == 200 and b'content="/stomp"' in page.body
    assert web.request("GET", "/api/broker").status == (200 if api else 404)
    assert web.request("GET", "/nothing").status == 404


def test_the_page_goes_out_whole_over_http() -> None:
    """Through a listener's channel, GET / gets 200 with the page, its length and headers,
    and the connection closes."""
    response = Web(Console()).request("GET", "/")
    assert response.status == 200
    assert response.headers["cache-control"] == "no-cache"
    assert "content-security-policy" in response.headers
    assert response.body.startswith(b"<!doctype html>")
    assert response.closed


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
