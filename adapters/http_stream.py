"""httpcore's network streams on asyncio's own transports, for the webhook sender and the
MTA-STS policy fetch.

httpcore's default backend goes through anyio, which on every read and write
opens a cancel scope, and answers the pool's "has the server closed this idle
connection?" (asked of every pooled connection on every request) with a
``getpeername`` and a ``select`` system call. Measured on webhook calls to a
loopback server, that was a third of the sender's time. Here an asyncio
protocol keeps what arrived in a buffer, so that question is answered from
memory, and reads wait on one future.

Errors are httpcore's (``ConnectError``, ``ReadTimeout``, …) raised from the
``OSError`` or ``ssl.SSLError`` behind them, as httpcore's own backends do,
so httpx maps them and callers can still find the errno or the certificate
problem in the chain.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import typing
from abc import abstractmethod
from collections.abc import Iterable

import httpcore

# Reading pauses while this much is buffered unread, and resumes below half of it.
_HIGH_WATER = 256 * 1024


class _Protocol(asyncio.Protocol):
    """What arrived on one connection, and who is waiting for more (or for room to write)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.write_paused = False
        self._reading_paused = False
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        _wake(self._readable)
        if len(self.buffer) > _HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True

    def eof_received(self) -> bool:
        self.eof = True
        _wake(self._readable)
        return False  # close our side too: an HTTP/1.1 client has nothing more to say

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        _wake(self._readable)
        _wake(self._writable)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        _wake(self._writable)

    def take(self, max_bytes: int) -> bytes:
        data = bytes(self.buffer[:max_bytes])
        del self.buffer[:max_bytes]
        if self._reading_paused and len(self.buffer) <= _HIGH_WATER // 2 and self.transport:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    async def wait_readable(self) -> None:
        self._readable = asyncio.get_running_loop().create_future()
        try:
            await self._readable
        finally:
            self._readable = None

    async def wait_writable(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()
        try:
            await self._writable
        finally:
            self._writable = None


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One TCP (or TLS) connection, as httpcore's connection pool uses it."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109 (httpcore's interface)
        protocol = self._protocol
        if not protocol.buffer and not protocol.eof:
            try:
                async with asyncio.timeout(timeout):
                    while not protocol.buffer and not protocol.eof:
                        await protocol.wait_readable()
            except TimeoutError:
                raise httpcore.ReadTimeout("timed out reading from the server") from None
        if protocol.buffer:
            return protocol.take(max_bytes)
        if protocol.error is not None:
            raise httpcore.ReadError(str(protocol.error)) from protocol.error
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109 (httpcore's interface)
        if not buffer:
            return
        protocol = self._protocol
        if self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed") from protocol.error
        self._transport.write(buffer)
        if not protocol.write_paused:
            return
        try:
            async with asyncio.timeout(timeout):
                while protocol.write_paused and not self._transport.is_closing():
                    await protocol.wait_writable()
        except TimeoutError:
            raise httpcore.WriteTimeout("timed out writing to the server") from None
        if protocol.error is not None:
            raise httpcore.WriteError(str(protocol.error)) from protocol.error

    async def aclose(self) -> None:
        # httpcore closes only connections it is done with: nothing buffered is still
        # owed, and a peer that reads nothing (or never answers a TLS close) must not
        # keep the socket open. So, as anyio does: close, let the loop run once, abort.
        self._transport.close()
        await asyncio.sleep(0)
        self._transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            # Our own deadline: the loop's ssl_handshake_timeout ends in a
            # ConnectionAbortedError, which would read as a refused connection.
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self._transport.abort()
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from None
        except OSError as exc:  # ssl.SSLError included
            self._transport.abort()
            raise httpcore.ConnectError(str(exc)) from exc
        except BaseException:
            self._transport.abort()
            raise
        if transport is None:  # the connection closed during the handshake
            self._transport.abort()
            raise httpcore.ConnectError("the server closed the connection during the TLS handshake")
        self._protocol.transport = transport
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable":
            # Asked of idle pooled connections: anything arriving now is the server closing.
            return bool(self._protocol.buffer) or self._protocol.eof
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


async def open_tcp_stream(
    address: str,
    port: int,
    timeout: float | None = None,  # noqa: ASYNC109 (mirrors httpcore's connect_tcp)
    local_address: str | None = None,
    socket_options: Iterable[typing.Any] | None = None,
) -> AsyncioStream:
    """Connect to ``address`` (an IP address: names are resolved, and checked, by the caller)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            transport, protocol = await loop.create_connection(
                _Protocol,
                address,
                port,
                local_addr=(local_address, 0) if local_address else None,
            )
    except TimeoutError:
        raise httpcore.ConnectTimeout(f"timed out connecting to {address} port {port}") from None
    except OSError as exc:
        raise httpcore.ConnectError(str(exc)) from exc
    sock = transport.get_extra_info("socket")
    try:
        for option in socket_options or ():
            sock.setsockopt(*option)
    except OSError as exc:
        transport.abort()
        raise httpcore.ConnectError(str(exc)) from exc
    return AsyncioStream(transport, protocol)


class AddressListBackend(httpcore.AsyncNetworkBackend):
    """An httpcore backend that connects only to the IP addresses ``addresses`` gives for a
    host (a resolver of our own, checked), each in turn, sharing the connect timeout with
    the resolution: one unreachable address must not use up the time the others need.
    TLS is started afterwards by httpcore with the host name, so SNI and certificate
    checks are unaffected."""

    unix_socket_refusal = "Unix sockets are never used"

    @abstractmethod
    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to try for ``host``, in order; raises ``httpcore.ConnectError``
        when there is none to connect to."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            async with asyncio.timeout(timeout):
                addresses = await self.addresses(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        options = list(socket_options or ())
        failure: Exception | None = None
        for index, address in enumerate(addresses):
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            share = None if remaining is None else remaining / (len(addresses) - index)
            try:
                return await open_tcp_stream(address, port, share, local_address, options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        if failure is None:
            raise httpcore.ConnectTimeout(f"connecting to {host} timed out")
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError(self.unix_socket_refusal)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
