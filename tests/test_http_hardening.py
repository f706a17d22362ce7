"""Hostile or odd HTTP: huge bodies, bad text, HEAD and 405, forged Host headers, silent
connections, and an index damaged while the server runs."""

from __future__ import annotations

import asyncio
import json
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from cache_helpers import built_index, fixture_cache
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError
from server_helpers import SEED_QUESTION, LiveServer, error_of

from indexer.build import build_index
from indexer.embedding import Embedder
from indexer.errors import InvalidQuery
from indexer.retrieval import MAX_K, MAX_QUERY_CHARS, Searcher, validate_query
from indexer.settings import Settings
from indexer.store import META, current_generation, live_segments
from server.app import MAX_BODY_BYTES, create_app
from server.serving import listen, uvicorn_config

pytest_plugins = ["server_helpers"]

# Generous: these bound a wait for something that must happen, they do not time anything.
DEADLINE_SECONDS = 60.0


# -- request bodies ----------------------------------------------------------------------------


def test_a_declared_body_over_the_limit_is_refused_with_413(client: TestClient) -> None:
    body = json.dumps({"q": "x" * MAX_BODY_BYTES}).encode()
    response = client.post("/api/ask", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "KiB" in str(error_of(response)["message"])
    # Any route, even one that never reads a body.
    assert client.post("/healthz", content=body).status_code == 413


def test_a_body_just_under_the_limit_is_read(client: TestClient) -> None:
    body = json.dumps({"q": "trust", "pad": "x" * (MAX_BODY_BYTES - 100)}).encode()
    assert len(body) <= MAX_BODY_BYTES
    response = client.post("/api/ask", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200


def _read_response_head(connection: socket.socket) -> bytes:
    """What the server sent until it closed or a blank line ended the head."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def test_a_chunked_body_is_counted_as_it_streams_and_refused(
    seed_index: Path, searcher: Searcher
) -> None:
    """No Content-Length: the 413 comes after the limit, without waiting for the body's end."""
    app = create_app(Settings(index=seed_index), searcher)
    with LiveServer(app) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(DEADLINE_SECONDS)
        sock.sendall(
            b"POST /api/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * 8192
        for _ in range(2 * MAX_BODY_BYTES // len(chunk)):
            # Stop once the server has answered: it closes the connection after its 413, and
            # writing on would reset the connection before the answer is read.
            if select.select([sock], [], [], 0)[0]:
                break
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        # The terminating chunk is never sent: only a server that counts can answer now.
        head = _read_response_head(sock)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]


# -- text that is not text ---------------------------------------------------------------------


def test_validate_query_refuses_lone_surrogates() -> None:
    for question in ("\ud800", "kim \udcff", "a\udfffb"):
        with pytest.raises(InvalidQuery, match="not valid text"):
            validate_query(question, 5)
    assert validate_query("Kim Jong Un \U0001f600 ?", 5) == "Kim Jong Un \U0001f600 ?"


def test_a_lone_surrogate_in_json_is_422(client: TestClient) -> None:
    body = '{"q": "\\ud800"}'
    response = client.post("/api/ask", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert "not valid text" in str(error_of(response)["message"])


def test_a_non_utf8_question_on_the_command_line_is_one_line(seed_index: Path) -> None:
    command = "from server.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", command, "ask", b"kim \xff", "--index", str(seed_index)],
        capture_output=True,
        timeout=300,
    )
    stderr = result.stderr.decode("utf-8", "replace").strip()
    assert result.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert "not valid text" in stderr


# -- malformed requests ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"q": "\xff\xfe"}'),  # invalid UTF-8 inside the JSON
        ("application/json", b"\xff\xfe"),
        ("application/json", b'{"q": "trust"} trailing'),
        ("application/json", b"[1, 2]"),
        ("application/json", b"null"),
        ("application/json", b"NaN"),
        ("text/plain", b'{"q": "trust"}'),
        ("application/x-www-form-urlencoded", b"q=trust"),
        ("multipart/form-data; boundary=x", b"--x--\r\n"),
        (None, b'{"q": "trust"}'),
    ],
    ids=[
        "bad-utf8-inside",
        "bad-utf8",
        "trailing",
        "array",
        "null",
        "nan",
        "text-plain",
        "form",
        "multipart",
        "no-content-type",
    ],
)
def test_every_malformed_body_is_422(
    client: TestClient, content_type: str | None, body: bytes
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/api/ask", content=body, headers=headers)
    assert response.status_code == 422
    assert "body" in str(error_of(response)["message"])


# -- methods -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/healthz", "/api/documents", f"/api/ask?q=trust&k={MAX_K}", "/", "/widget.js"]
)
def test_head_answers_like_get_without_a_body(client: TestClient, path: str) -> None:
    get = client.get(path)
    head = client.head(path)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/api/ask", "GET, HEAD, POST"),
        ("PUT", "/api/search", "GET, HEAD"),
        ("POST", "/healthz", "GET, HEAD"),
        ("PATCH", "/api/documents/x.txt", "GET, HEAD"),
    ],
)
def test_405_names_the_allowed_methods(
    client: TestClient, method: str, path: str, allowed: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    error_of(response)


# -- OpenAPI -----------------------------------------------------------------------------------


def test_openapi_declares_the_bounds_the_validator_enforces(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in ("/api/ask", "/api/search"):
        parameters = {p["name"]: p for p in schema["paths"][path]["get"]["parameters"]}
        q, k = parameters["q"], parameters["k"]
        assert q["required"] is True
        assert "default" not in q["schema"]  # required: the signature's "" is not a default
        assert (q["schema"]["minLength"], q["schema"]["maxLength"]) == (1, MAX_QUERY_CHARS)
        assert (k["schema"]["minimum"], k["schema"]["maximum"]) == (1, MAX_K)
    body = schema["components"]["schemas"]["AskRequest"]
    assert body["required"] == ["q"]
    q, k = body["properties"]["q"], body["properties"]["k"]
    assert (q["minLength"], q["maxLength"]) == (1, MAX_QUERY_CHARS)
    assert (k["minimum"], k["maximum"]) == (1, MAX_K)
    # The messages still come from the one validator.
    missing = client.get("/api/ask")
    assert error_of(missing)["message"] == "the question is empty"
    too_big = client.post("/api/ask", json={"q": "trust", "k": MAX_K + 1})
    assert error_of(too_big)["message"] == f"k must be between 1 and {MAX_K}"


# -- links never come from the Host header -----------------------------------------------------


EVIL_HOST = "evil.example"


def test_pages_do_not_reflect_the_host_header(client: TestClient) -> None:
    doc_url = client.get("/api/documents").json()["documents"][0]["url"]
    for path, params in [(doc_url, {}), ("/embed", {"q": SEED_QUESTION}), ("/", {})]:
        response = client.get(path, params=params, headers={"Host": EVIL_HOST})
        assert response.status_code == 200
        assert EVIL_HOST not in response.text, path


def test_public_url_makes_the_handed_out_links_absolute(
    seed_index: Path, searcher: Searcher
) -> None:
    settings = Settings(index=seed_index, public_url="https://search.example.com/")
    assert settings.public_url == "https://search.example.com"
    with TestClient(create_app(settings, searcher)) as configured:
        doc_url = configured.get("/api/documents").json()["documents"][0]["url"]
        page = configured.get(doc_url, headers={"Host": EVIL_HOST}).text
        assert f'data-url="https://search.example.com{doc_url}#p1"' in page
        embed = configured.get("/embed", params={"q": SEED_QUESTION}).text
        assert 'class="passage-title" href="https://search.example.com/doc/' in embed


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "search.example.com", "https://x.example/?a=1", "ftp://x.example"],
)
def test_public_url_must_be_an_http_url(url: str) -> None:
    with pytest.raises(ValidationError):
        Settings(public_url=url)


# -- connections that say nothing -------------------------------------------------------------


class ServeServer:
    """The app under the uvicorn settings of `paracite serve`, on a free loopback port."""

    def __init__(self, app: FastAPI, head_timeout: float) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        config = uvicorn_config(app, "127.0.0.1", self.port, head_timeout=head_timeout)
        config.log_level = "warning"
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> ServeServer:
        self._thread.start()
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "no start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=DEADLINE_SECONDS)
        self._socket.close()


def _closed_by_server(connection: socket.socket, trickle: bytes = b"") -> bool:
    """Wait (sending `trickle` a byte at a time, if given) until the server closes."""
    connection.settimeout(0.2)
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        try:
            if trickle:
                connection.sendall(trickle[:1])
                trickle = trickle[1:]
            if connection.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


@pytest.fixture
def serve_server(seed_index: Path, searcher: Searcher) -> Iterator[ServeServer]:
    # long enough for a busy machine to send a prompt request head, short enough for a test
    with ServeServer(create_app(Settings(index=seed_index), searcher), head_timeout=2.0) as s:
        yield s


def test_silent_connections_are_closed(serve_server: ServeServer) -> None:
    connections = [socket.create_connection(("127.0.0.1", serve_server.port)) for _ in range(5)]
    try:
        assert all(_closed_by_server(c) for c in connections)
    finally:
        for connection in connections:
            connection.close()


def test_a_request_head_sent_a_byte_at_a_time_is_cut_off(serve_server: ServeServer) -> None:
    slow = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 100_000
    with socket.create_connection(("127.0.0.1", serve_server.port)) as connection:
        assert _closed_by_server(connection, trickle=slow)


def test_a_normal_request_is_answered_then_the_idle_connection_closed(
    serve_server: ServeServer,
) -> None:
    with socket.create_connection(("127.0.0.1", serve_server.port)) as connection:
        connection.settimeout(DEADLINE_SECONDS)
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response_head(connection).startswith(b"HTTP/1.1 200")
        assert _closed_by_server(connection)


# -- an index damaged while the server runs ----------------------------------------------------


@pytest.fixture
def damaged_index_client(
    request: pytest.FixtureRequest, make_settings, seeds_copy: Path, embedder: Embedder
) -> Iterator[tuple[TestClient, Path]]:
    """A server over its own index, healthy at first; the test damages the index."""
    settings = make_settings()
    built_index(
        fixture_cache(request.config),
        "seed-index",
        settings.index,
        lambda index_dir: build_index(seeds_copy, Settings(index=index_dir), embedder=embedder),
    )
    opened = Searcher.open(settings.index, embedder)
    with TestClient(create_app(settings, opened), raise_server_exceptions=False) as client:
        yield client, settings.index
    opened.close()


REBUILD_HINT = "rebuild the index with `paracite index <folder> --rebuild`"


def _overwrite_middle(path: Path) -> None:
    """Garbage over every page but the first (so the header still looks fine)."""
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.seek(4096)
        handle.write(b"\xff" * (size - 4096))


def test_a_damaged_index_answers_503_and_healthz_says_why(
    damaged_index_client: tuple[TestClient, Path],
) -> None:
    client, index_dir = damaged_index_client
    healthy = client.get("/healthz")
    assert healthy.status_code == 200 and healthy.json()["status"] == "ok"
    doc_id = client.get("/api/documents").json()["documents"][0]["doc_id"]
    (segment,) = live_segments(index_dir)
    _overwrite_middle(segment / META)

    health = client.get("/healthz")
    assert health.status_code == 503
    message = str(error_of(health)["message"])
    assert "changed after it was opened (generations and segments are never modified)" in message
    assert message.endswith(f"; {REBUILD_HINT}")
    for path in ("/api/ask?q=" + SEED_QUESTION, f"/api/documents/{doc_id}"):
        response = client.get(path)
        assert response.status_code == 503, (path, response.text)
        assert "unreadable" in str(error_of(response)["message"])
        assert "Traceback" not in response.text
    page = client.get(f"/doc/{doc_id}")
    assert page.status_code == 503
    assert page.headers["content-type"].startswith("text/html")


def test_healthz_notices_a_removed_generation(
    damaged_index_client: tuple[TestClient, Path],
) -> None:
    client, index_dir = damaged_index_client
    generation = current_generation(index_dir)
    assert generation is not None
    shutil.rmtree(generation)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert error_of(response)["message"] == (
        f"the index generation this server opened ({generation.name}) was removed; " + REBUILD_HINT
    )


def test_connections_accepted_by_serve_send_small_writes_at_once() -> None:
    """Nagle's algorithm is off on the connections `paracite serve` accepts: with it on, a
    keep-alive client's delayed ACK held every response body back about 40 ms. asyncio
    turns it off only on sockets that say they are TCP, which `listen` now makes."""
    listener = listen("127.0.0.1", 0)
    nodelay: list[int] = []

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            nodelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def accept_one() -> None:
        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(200):  # until accepted; bounded, not a guess at speed
            if nodelay:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(accept_one())
    assert nodelay == [1]
