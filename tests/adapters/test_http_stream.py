"""``open_tcp_stream`` / ``AsyncioStream`` against real servers on 127.0.0.1.

The servers are ``asyncio.start_server`` servers in the test's own loop, so every
byte goes through the kernel's loopback: EOF, resets, refused connections, flow
control and TLS are real. Some tests drive the streams through httpcore's
connection pool, the way the webhook sender uses them. The whole module runs
once more on uvloop (``test_on_uvloop``).

The flow-control tests shrink the sockets' kernel buffers, so that a few
megabytes are enough to fill them, and look at the protocol's buffer to show
that reading pauses.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import random
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpcore
import pytest
import uvloop

from adapters.http_stream import _HIGH_WATER, AsyncioStream, open_tcp_stream
from tests.adapters.test_webhook_http import TLS_NAME, TlsFiles, _make_certificates

LOOPBACK = "127.0.0.1"
MiB = 1024 * 1024
SMALL_BUFFER = 64 * 1024  # SO_SNDBUF / SO_RCVBUF for the flow-control tests
CHUNK = 64 * 1024  # what httpcore asks ``read`` for
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


# --- Servers and helpers ---------------------------------------------------------------------


@dataclass
class Server:
    port: int
    peers: list[tuple[str, int]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def serve(
    handler: Handler,
    *,
    ssl_context: ssl.SSLContext | None = None,
    sndbuf: int | None = None,
    rcvbuf: int | None = None,
) -> AsyncIterator[Server]:
    """Serve ``handler`` on a free loopback port; every connection is closed, and every
    handler still running is cancelled, on the way out (nothing outlives the test)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    for option, size in ((socket.SO_SNDBUF, sndbuf), (socket.SO_RCVBUF, rcvbuf)):
        if size is not None:  # inherited by the accepted sockets
            sock.setsockopt(socket.SOL_SOCKET, option, size)
    sock.bind((LOOPBACK, 0))
    running: set[asyncio.Task[Any]] = set()
    result = Server(sock.getsockname()[1])

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        running.add(task)
        result.peers.append(writer.get_extra_info("peername"))
        try:
            await handler(reader, writer)
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            pass  # the test is over, or the client went away: both are expected here
        finally:
            writer.close()
            running.discard(task)

    server = await asyncio.start_server(connected, sock=sock, ssl=ssl_context)
    try:
        yield result
    finally:
        server.close()
        for task in list(running):
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await server.wait_closed()


async def read_to_eof(stream: httpcore.AsyncNetworkStream) -> bytes:
    chunks = []
    async with asyncio.timeout(10):
        while chunk := await stream.read(CHUNK):
            chunks.append(chunk)
    return b"".join(chunks)


async def read_exactly(stream: httpcore.AsyncNetworkStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.read(size - len(data), timeout=5.0)
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Poll ``condition`` (state of a protocol or pool, which no event signals)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


async def echo_lines(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        writer.write(b"echo: " + line)
        await writer.drain()


def payload(size: int, seed: int) -> bytes:
    """Bytes that do not repeat, so a lost, doubled or reordered chunk shows."""
    return random.Random(seed).randbytes(size)


# --- Round trip, EOF, addresses --------------------------------------------------------------


async def test_write_then_read_round_trip() -> None:
    async with serve(echo_lines) as server:
        stream = await open_tcp_stream(LOOPBACK, server.port, timeout=5.0)
        try:
            await stream.write(b"hello\n", timeout=5.0)
            assert await read_exactly(stream, 12) == b"echo: hello\n"
            await stream.write(b"")  # nothing to send: a no-op
            await stream.write(b"second line\n")
            assert await read_exactly(stream, 18) == b"echo: second line\n"
        finally:
            await stream.aclose()


async def test_read_returns_at_most_max_bytes() -> None:
    async def send_ten(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"0123456789")
        await writer.drain()
        await reader.read()  # until the client closes

    async with serve(send_ten) as server:
        stream = await open_tcp_stream(LOOPBACK, server.port)
        try:
            first = await stream.read(4, timeout=5.0)
            assert 1 <= len(first) <= 4
            assert first + await read_exactly(stream, 10 - len(first)) == b"0123456789"
        finally:
            await stream.aclose()


async def test_a_clean_close_is_eof_and_makes_the_stream_readable() -> None:
    close_now = asyncio.Event()

    async def close_when_told(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await close_now.wait()  # the wrapper in ``serve`` closes the connection

    async with serve(close_when_told) as server:
        stream = await open_tcp_stream(LOOPBACK, server.port)
        try:
            await asyncio.sleep(0.01)
            assert stream.get_extra_info("is_readable") is False  # idle and open

            close_now.set()
            await eventually(lambda: stream.get_extra_info("is_readable"))
            assert await stream.read(CHUNK, timeout=5.0) == b""
            assert await stream.read(CHUNK, timeout=5.0) == b""  # and stays at EOF
            assert stream.get_extra_info("is_readable") is True
            # Our side closed too: nothing more can be sent.
            with pytest.raises(httpcore.WriteError):
                await stream.write(b"too late")
        finally:
            await stream.aclose()


async def test_data_before_the_close_is_read_before_eof() -> None:
    async def say_bye(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye")
        await writer.drain()

    async with serve(say_bye) as server:
        stream = await open_tcp_stream(LOOPBACK, server.port)
        try:
            await eventually(lambda: stream.get_extra_info("is_readable"))
            assert await read_to_eof(stream) == b"bye"
        finally:
            await stream.aclose()


async def test_unread_data_makes_an_idle_stream_readable() -> None:
    async def say_hi(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hi")
        await writer.drain()
        await reader.read()

    async with serve(say_hi) as server:
        stream = await open_tcp_stream(LOOPBACK, server.port)
        try:
            await eventually(lambda: stream.get_extra_info("is_readable"))
            assert await stream.read(CHUNK) == b"hi"
            assert stream.get_extra_info("is_readable") is False
        finally:
            await stream.aclose()


async def test_addresses_and_socket() -> None:
    async with serve(echo_lines) as server:
        stream = await open_tcp_stream(LOOPBACK, server.port)
        try:
            await stream.write(b"x\n")
            await read_exactly(stream, 8)  # the server has accepted us by now
            client_addr = stream.get_extra_info("client_addr")
            server_addr = stream.get_extra_info("server_addr")
            assert isinstance(client_addr, tuple)
            assert isinstance(server_addr, tuple)
            assert server_addr == (LOOPBACK, server.port)
            assert client_addr == server.peers[0]
            assert client_addr[0] == LOOPBACK
            assert client_addr[1] not in (0, server.port)
            sock = stream.get_extra_info("socket")
            assert sock.getsockname() == client_addr
            assert sock.getpeername() == server_addr
            assert stream.get_extra_info("ssl_object") is None
            assert stream.get_extra_info("no such thing") is None
        finally:
            await stream.aclose()


async def test_local_address_and_socket_options_are_applied() -> None:
    async with serve(echo_lines) as server:
        stream = await open_tcp_stream(
            LOOPBACK,
            server.port,
            local_address="127.0.0.2",  # all of 127/8 is loopback on Linux
            socket_options=[(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)],
        )
        try:
            await stream.write(b"x\n")
            await read_exactly(stream, 8)
            assert stream.get_extra_info("client_addr")[0] == "127.0.0.2"
            assert server.peers[0][0] == "127.0.0.2"
            sock = stream.get_extra_info("socket")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        finally:
            await stream.aclose()


async def test_a_socket_option_that_fails_is_a_connect_error_and_drops_the_connection() -> None:
    dropped = asyncio.Event()

    async def wait_for_the_end(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()
        finally:
            dropped.set()

    async with serve(wait_for_the_end) as server:
        with pytest.raises(httpcore.ConnectError) as caught:
            await open_tcp_stream(
                LOOPBACK, server.port, socket_options=[(socket.SOL_SOCKET, 54321, 1)]
            )
        assert isinstance(caught.value.__cause__, OSError)
        assert caught.value.__cause__.errno == errno.ENOPROTOOPT
        await asyncio.wait_for(dropped.wait(), 5.0)  # the half-made connection was aborted


# --- Errors ----------------------------------------------------------------------------------


async def test_a_closed_port_is_connection_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bound:
        bound.bind((LOOPBACK, 0))  # bound, never listening: the port stays ours, and refuses
        port = bound.getsockname()[1]
        with pytest.raises(httpcore.ConnectError) as caught:
            await open_tcp_stream(LOOPBACK, port, timeout=5.0)
    cause = caught.value.__cause__
    assert isinstance(cause, OSError)
    assert cause.errno == errno.ECONNREFUSED
    assert isinstance(cause, ConnectionRefusedError)


async def test_a_silent_server_is_a_read_timeout() -> None:
    async def say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with serve(say_nothing) as server:
        stream = await open_tcp_stream(LOOPBACK, server.port)
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(httpcore.ReadTimeout):
                await stream.read(CHUNK, timeout=0.05)
            assert 0.04 <= loop.time() - started < 2.0
            # The stream is still usable after a timeout.
            with pytest.raises(httpcore.ReadTimeout):
                await stream.read(CHUNK, timeout=0.01)
        finally:
            await stream.aclose()


async def test_a_reset_is_a_read_error_then_a_write_error() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # closing with a zero linger sends an RST

    async with serve(reset) as server:
        stream = await open_tcp_stream(LOOPBACK, server.port)
        try:
            with pytest.raises(httpcore.ReadError) as read_error:
                await stream.read(CHUNK, timeout=5.0)
            assert isinstance(read_error.value.__cause__, ConnectionResetError)
            assert read_error.value.__cause__.errno == errno.ECONNRESET
            assert stream.get_extra_info("is_readable") is True  # a pool would drop it

            with pytest.raises(httpcore.WriteError) as write_error:
                await stream.write(b"anyone there?")
            assert isinstance(write_error.value.__cause__, ConnectionResetError)
        finally:
            await stream.aclose()


# --- Flow control ----------------------------------------------------------------------------


async def test_a_large_answer_pauses_reading_and_arrives_whole() -> None:
    body = payload(5 * MiB, seed=5)
    sent = asyncio.Event()

    async def send_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(body)
        await writer.drain()
        sent.set()

    async with serve(send_body, sndbuf=SMALL_BUFFER) as server:
        stream = await open_tcp_stream(
            LOOPBACK,
            server.port,
            socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)],
        )
        try:
            assert isinstance(stream, AsyncioStream)
            protocol = stream._protocol
            # Nobody reads: the protocol buffers a little over 256 KiB, then stops reading…
            await eventually(lambda: len(protocol.buffer) > _HIGH_WATER)
            await asyncio.sleep(0.05)
            buffered = len(protocol.buffer)
            assert _HIGH_WATER < buffered <= 2 * _HIGH_WATER  # one read past the mark at most
            assert not stream._transport.is_reading()
            # …so the server cannot get rid of the rest.
            assert not sent.is_set()

            # Reading resumes below half the mark; every byte arrives, in order.
            first = await stream.read(CHUNK)
            assert len(first) == CHUNK
            received = first + await read_to_eof(stream)
            assert len(received) == len(body)
            assert received == body
            assert sent.is_set()
            assert not protocol.buffer
        finally:
            await stream.aclose()


async def test_a_large_write_waits_for_a_slow_reader_and_arrives_whole() -> None:
    data = payload(4 * MiB, seed=4)
    start_reading = asyncio.Event()
    received = bytearray()
    all_read = asyncio.Event()

    async def read_slowly(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await start_reading.wait()
        while len(received) < len(data):
            chunk = await reader.read(CHUNK)
            if not chunk:
                break
            received.extend(chunk)
            await asyncio.sleep(0.001)
        all_read.set()

    async with serve(read_slowly, rcvbuf=SMALL_BUFFER) as server:
        stream = await open_tcp_stream(
            LOOPBACK,
            server.port,
            socket_options=[(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)],
        )
        try:
            writing = asyncio.create_task(stream.write(data, timeout=10.0))
            await asyncio.sleep(0.05)
            assert not writing.done()  # waiting for room: the server reads nothing yet
            assert len(received) == 0

            start_reading.set()
            await asyncio.wait_for(writing, 10.0)
            await asyncio.wait_for(all_read.wait(), 10.0)
            assert len(received) == len(data)
            assert bytes(received) == data
        finally:
            await stream.aclose()


async def test_a_write_nobody_reads_times_out_and_closing_lets_go_at_once() -> None:
    never = asyncio.Event()

    async def read_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await never.wait()

    async with serve(read_nothing, rcvbuf=SMALL_BUFFER) as server:
        stream = await open_tcp_stream(
            LOOPBACK,
            server.port,
            socket_options=[(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)],
        )
        sock = stream.get_extra_info("socket")
        try:
            with pytest.raises(httpcore.WriteTimeout):
                await stream.write(payload(4 * MiB, seed=1), timeout=0.05)
        finally:
            await stream.aclose()
        # Closing lets go of the connection at once, though megabytes wait unread for
        # a peer that reads nothing (httpcore closes only connections it is done with).
        await asyncio.sleep(0.05)
        assert stream.get_extra_info("is_readable")  # the connection is lost to us
        assert sock.fileno() == -1


# --- Through httpcore's connection pool ------------------------------------------------------


class Backend(httpcore.AsyncNetworkBackend):
    """Connects every host name to 127.0.0.1 with ``open_tcp_stream``; keeps the streams."""

    def __init__(self) -> None:
        self.streams: list[AsyncioStream] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await open_tcp_stream(LOOPBACK, port, timeout, local_address, socket_options)
        self.streams.append(stream)
        return stream

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise NotImplementedError

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass
class TinyHttp:
    """HTTP/1.1 with keep-alive: answers ``connection N request M <path>``.

    ``close_idle``: once set, close each connection after its first answer, which
    says nothing about closing (as a server whose keep-alive timeout ran out does).
    ``silent``: read the request, never answer.
    """

    close_idle: asyncio.Event | None = None
    silent: bool = False
    connections: int = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        served = 0
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            served += 1
            if self.silent:
                await asyncio.Event().wait()
            path = head.split(b" ", 2)[1]
            body = b"connection %d request %d %s" % (number, served, path)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            if self.close_idle is not None:
                await self.close_idle.wait()
                return  # ``serve`` closes the connection


async def test_the_pool_keeps_a_connection_alive() -> None:
    app = TinyHttp()
    backend = Backend()
    async with (
        serve(app) as server,
        httpcore.AsyncConnectionPool(network_backend=backend) as pool,
    ):
        url = f"http://127.0.0.1:{server.port}"
        first = await pool.request("GET", f"{url}/one")
        second = await pool.request("GET", f"{url}/two")
    assert (first.status, first.content) == (200, b"connection 1 request 1 /one")
    assert (second.status, second.content) == (200, b"connection 1 request 2 /two")
    assert len(backend.streams) == 1
    assert app.connections == 1


async def test_an_idle_connection_the_server_closed_is_replaced_without_an_error() -> None:
    close_idle = asyncio.Event()
    app = TinyHttp(close_idle=close_idle)
    backend = Backend()
    async with (
        serve(app) as server,
        httpcore.AsyncConnectionPool(network_backend=backend) as pool,
    ):
        url = f"http://127.0.0.1:{server.port}"
        first = await pool.request("GET", f"{url}/one")
        assert first.content == b"connection 1 request 1 /one"
        assert len(pool.connections) == 1  # kept: the answer did not say it would close

        # The server closes it while idle; the pool sees that in ``is_readable``…
        close_idle.set()
        await eventually(lambda: backend.streams[0].get_extra_info("is_readable"))
        # …and makes the next request on a new connection, without troubling the caller.
        second = await pool.request("GET", f"{url}/two")
        assert (second.status, second.content) == (200, b"connection 2 request 1 /two")
        assert len(backend.streams) == 2
    assert app.connections == 2


async def test_a_silent_server_is_a_read_timeout_through_the_pool() -> None:
    backend = Backend()
    async with (
        serve(TinyHttp(silent=True)) as server,
        httpcore.AsyncConnectionPool(network_backend=backend) as pool,
    ):
        with pytest.raises(httpcore.ReadTimeout):
            await pool.request(
                "GET",
                f"http://127.0.0.1:{server.port}/slow",
                extensions={"timeout": {"read": 0.05}},
            )
        assert len(backend.streams) == 1
        assert len(pool.connections) == 0  # a connection that timed out is not reused


async def test_a_large_body_through_the_pool() -> None:
    body = payload(3 * MiB, seed=3)

    async def send_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body))
        writer.write(body)
        await writer.drain()
        await reader.read()

    async with (
        serve(send_body) as server,
        httpcore.AsyncConnectionPool(network_backend=Backend()) as pool,
    ):
        response = await pool.request("GET", f"http://127.0.0.1:{server.port}/big")
    assert response.status == 200
    assert response.content == body


# --- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return _make_certificates(tmp_path_factory.mktemp("tls"), TLS_NAME)


def server_context(tls_files: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files.cert_path, tls_files.key_path)
    return context


def client_context(tls_files: TlsFiles) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_files.ca_path))


async def test_tls_round_trip(tls_files: TlsFiles) -> None:
    async with serve(echo_lines, ssl_context=server_context(tls_files)) as server:
        raw = await open_tcp_stream(LOOPBACK, server.port)
        assert raw.get_extra_info("ssl_object") is None
        stream = await raw.start_tls(client_context(tls_files), TLS_NAME, timeout=5.0)
        try:
            ssl_object = stream.get_extra_info("ssl_object")
            assert ssl_object is not None
            assert ssl_object.server_hostname == TLS_NAME
            assert ssl_object.version() in ("TLSv1.2", "TLSv1.3")
            assert stream.get_extra_info("server_addr") == (LOOPBACK, server.port)

            await stream.write(b"over tls\n")
            assert await read_exactly(stream, 15) == b"echo: over tls\n"
            await stream.write(b"again\n")
            assert await read_exactly(stream, 12) == b"echo: again\n"
        finally:
            await stream.aclose()


async def test_tls_large_answer_and_eof(tls_files: TlsFiles) -> None:
    body = payload(2 * MiB, seed=2)

    async def send_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(body)
        await writer.drain()

    async with serve(send_body, ssl_context=server_context(tls_files)) as server:
        raw = await open_tcp_stream(LOOPBACK, server.port)
        stream = await raw.start_tls(client_context(tls_files), TLS_NAME, timeout=5.0)
        try:
            assert isinstance(stream, AsyncioStream)
            protocol, transport = stream._protocol, stream._transport
            # It is the TLS transport (not the TCP one under it) that stops reading.
            await eventually(lambda: len(protocol.buffer) > _HIGH_WATER)
            await asyncio.sleep(0.05)
            assert not transport.is_reading()
            assert len(protocol.buffer) < len(body)
            first = await stream.read(CHUNK)
            assert transport.is_reading() == (len(protocol.buffer) <= _HIGH_WATER // 2)
            assert first + await read_to_eof(stream) == body
            assert stream.get_extra_info("is_readable") is True
        finally:
            await stream.aclose()


async def test_a_certificate_for_another_name_is_a_connect_error(tls_files: TlsFiles) -> None:
    async with serve(echo_lines, ssl_context=server_context(tls_files)) as server:
        raw = await open_tcp_stream(LOOPBACK, server.port)
        with pytest.raises(httpcore.ConnectError, match="certificate verify failed") as caught:
            await raw.start_tls(client_context(tls_files), "wrong.test", timeout=5.0)
        assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
        assert "wrong.test" in str(caught.value.__cause__)


async def test_an_untrusted_certificate_is_a_connect_error(tls_files: TlsFiles) -> None:
    async with serve(echo_lines, ssl_context=server_context(tls_files)) as server:
        raw = await open_tcp_stream(LOOPBACK, server.port)
        with pytest.raises(httpcore.ConnectError) as caught:
            await raw.start_tls(ssl.create_default_context(), TLS_NAME, timeout=5.0)
        assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)


async def test_a_server_that_closes_in_the_handshake_is_a_connect_error(
    tls_files: TlsFiles,
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        return  # ``serve`` closes the connection at once

    async with serve(hang_up) as server:
        raw = await open_tcp_stream(LOOPBACK, server.port)
        with pytest.raises(httpcore.ConnectError):
            await raw.start_tls(client_context(tls_files), TLS_NAME, timeout=5.0)


async def test_tls_through_the_pool_checks_the_host_name(tls_files: TlsFiles) -> None:
    app = TinyHttp()
    async with (
        serve(app, ssl_context=server_context(tls_files)) as server,
        httpcore.AsyncConnectionPool(
            ssl_context=client_context(tls_files), network_backend=Backend()
        ) as pool,
    ):
        response = await pool.request("GET", f"https://{TLS_NAME}:{server.port}/secure")
        assert (response.status, response.content) == (200, b"connection 1 request 1 /secure")
        with pytest.raises(httpcore.ConnectError, match="certificate verify failed"):
            await pool.request("GET", f"https://other.test:{server.port}/secure")


async def test_a_tls_handshake_that_takes_too_long_is_a_connect_timeout(
    tls_files: TlsFiles,
) -> None:
    async def never_shake_hands(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with serve(never_shake_hands) as server:
        raw = await open_tcp_stream(LOOPBACK, server.port)
        with pytest.raises(httpcore.ConnectTimeout):
            await raw.start_tls(client_context(tls_files), TLS_NAME, timeout=0.05)


# --- The same on uvloop ----------------------------------------------------------------------

ON_UVLOOP = [
    test_write_then_read_round_trip,
    test_read_returns_at_most_max_bytes,
    test_a_clean_close_is_eof_and_makes_the_stream_readable,
    test_data_before_the_close_is_read_before_eof,
    test_unread_data_makes_an_idle_stream_readable,
    test_addresses_and_socket,
    test_local_address_and_socket_options_are_applied,
    test_a_socket_option_that_fails_is_a_connect_error_and_drops_the_connection,
    test_a_closed_port_is_connection_refused,
    test_a_silent_server_is_a_read_timeout,
    test_a_reset_is_a_read_error_then_a_write_error,
    test_a_large_answer_pauses_reading_and_arrives_whole,
    test_a_large_write_waits_for_a_slow_reader_and_arrives_whole,
    test_a_write_nobody_reads_times_out_and_closing_lets_go_at_once,
    test_a_tls_handshake_that_takes_too_long_is_a_connect_timeout,
    test_the_pool_keeps_a_connection_alive,
    test_an_idle_connection_the_server_closed_is_replaced_without_an_error,
    test_a_silent_server_is_a_read_timeout_through_the_pool,
    test_a_large_body_through_the_pool,
    test_tls_round_trip,
    test_tls_large_answer_and_eof,
    test_a_certificate_for_another_name_is_a_connect_error,
    test_an_untrusted_certificate_is_a_connect_error,
    test_a_server_that_closes_in_the_handshake_is_a_connect_error,
    test_tls_through_the_pool_checks_the_host_name,
]


@pytest.mark.parametrize("scenario", ON_UVLOOP, ids=lambda scenario: scenario.__name__[5:])
def test_on_uvloop(scenario: Callable[..., Awaitable[None]], tls_files: TlsFiles) -> None:
    wants_tls = "tls_files" in inspect.signature(scenario).parameters
    arguments = {"tls_files": tls_files} if wants_tls else {}

    async def run() -> None:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        await scenario(**arguments)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run())
