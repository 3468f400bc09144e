"""The server's door under real sockets: slow, silent and greedy clients are bounded.

The app is publishd's own stack (``uvicorn_config``'s protocol, ``BodyLimit``,
``parsing``) on a real uvicorn in a thread, with short timeouts so the
bounds are seen in about a second.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from infrastructure.settings import Settings
from interfaces.http.body_limit import BodyLimit
from interfaces.http.errors import install_error_handlers
from interfaces.http.parsing import read_json
from interfaces.server import HTTP_STACKS, uvicorn_config
from tests.support.servers import _ReadyServer

TIMEOUT = 1.0
MAX_BYTES = 6 * 1024 * 1024


async def healthz(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def echo(request: Request) -> JSONResponse:
    body = await read_json(request)
    return JSONResponse({"kind": type(body).__name__})


@pytest.fixture(scope="module", params=sorted(HTTP_STACKS))
def address(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    """The server on each of uvicorn's HTTP parsers: the bounds hold on both."""
    settings = Settings(
        header_timeout_seconds=TIMEOUT, keep_alive_seconds=TIMEOUT, http_stack=request.param
    )
    with serving(settings) as found:
        yield found


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[tuple[str, int]]:
    app = Starlette(routes=[Route("/healthz", healthz), Route("/echo", echo, methods=["PUT"])])
    install_error_handlers(app)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # A small receive buffer (accepted sockets inherit it), as over a real network: the
    # kernel cannot swallow an unread body, so a server that closes without reading it
    # resets the connection under a client still sending.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.bind(("127.0.0.1", 0))
    limited = BodyLimit(app, MAX_BYTES, drain_bytes=3 * MAX_BYTES, read_timeout=TIMEOUT)
    server = _ReadyServer(uvicorn_config(limited, settings, lifespan="off", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    assert server.ready.wait(10) and server.started
    try:
        yield sock.getsockname()
    finally:
        server.stop()
        thread.join(10)
        sock.close()


def _healthz_ms(address: tuple[str, int]) -> float:
    started = time.monotonic()
    conn = http.client.HTTPConnection(*address, timeout=5)
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200
    conn.close()
    return (time.monotonic() - started) * 1000


def _closed_by_server(sock: socket.socket, deadline: float) -> bool:
    """Wait (up to ``deadline``) for the server to close: EOF or a reset."""
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def test_half_open_connections_are_closed_and_healthz_still_answers(
    address: tuple[str, int],
) -> None:
    openers = [
        b"",  # silent
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n",  # half a header
        b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{",  # body never comes
    ]
    socks = []
    for n in range(200):
        sock = socket.create_connection(address)
        sock.sendall(openers[n % 3])
        socks.append(sock)
    try:
        assert max(_healthz_ms(address) for _ in range(5)) < 100
        deadline = time.monotonic() + TIMEOUT + 3
        assert all(_closed_by_server(s, deadline) for s in socks)
    finally:
        for sock in socks:
            sock.close()


def test_idle_keep_alive_connection_is_closed(address: tuple[str, int]) -> None:
    with socket.create_connection(address) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        assert _closed_by_server(sock, time.monotonic() + TIMEOUT + 3)


def test_a_body_that_never_comes_is_answered_408(address: tuple[str, int]) -> None:
    with socket.create_connection(address) as sock:
        sock.sendall(b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
        sock.settimeout(TIMEOUT + 3)
        assert sock.recv(4096).startswith(b"HTTP/1.1 408")


@pytest.mark.parametrize("declared", [True, False])
def test_a_client_that_writes_its_whole_body_reads_the_413(
    address: tuple[str, int], declared: bool
) -> None:
    body = json.dumps({"a": "x" * (2 * MAX_BYTES)}).encode()
    conn = http.client.HTTPConnection(*address, timeout=10)
    if declared:
        conn.request("PUT", "/echo", body=body, headers={"Content-Type": "application/json"})
    else:
        conn.request("PUT", "/echo", body=iter([body[:1000], body[1000:]]), encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"] == "payload_too_large"
    conn.close()


@pytest.mark.parametrize("stack", sorted(HTTP_STACKS))
def test_connections_past_the_cap_are_refused_with_a_503(stack: str) -> None:
    settings = Settings(header_timeout_seconds=30, max_connections=5, http_stack=stack)
    with serving(settings) as address:
        held = [socket.create_connection(address) for _ in range(5)]
        try:
            deadline = time.monotonic() + 5
            while True:  # the server counts a connection once its loop has accepted it
                with socket.create_connection(address) as extra:
                    extra.settimeout(1)
                    try:
                        answer = extra.recv(4096)
                    except TimeoutError:
                        answer = b"(no answer: the connection was let in)"
                if answer.startswith(b"HTTP/1.1 503") or time.monotonic() > deadline:
                    break
            assert answer.startswith(b"HTTP/1.1 503"), answer
            assert b"unavailable" in answer
        finally:
            for sock in held:
                sock.close()
