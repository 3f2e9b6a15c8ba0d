"""SMTP servers that misbehave on purpose, for the direct transport's tests.

One ``HostileSmtpServer`` listens on an address and port (25 on its own loopback address,
as a fake MX host) and behaves as ``mode`` says: "greet-421" turns every client away,
"silent" never greets, "endless" answers EHLO with continuation lines that never end,
"huge-line" answers EHLO with 10 MB and no line end, "stall-after-data" takes the message
and never answers the final dot, "drop-in-data" hangs up in the middle of DATA, "bad-tls"
offers STARTTLS and then breaks the handshake (and takes mail in the clear), "rate-limit"
answers MAIL with 421 4.7.28, "blocked" answers RCPT with a Spamhaus block. In any other
mode ("accept") it takes every message and counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field


@dataclass
class Concurrency:
    """Connections open at once, and the most there were, over the servers that share it."""

    now: int = 0
    peak: int = 0

    def opened(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)


@dataclass
class HostileSmtpServer:
    host: str
    port: int
    mode: str
    accepted: list[bytes] = field(default_factory=list)
    connections: int = 0
    concurrency: Concurrency = field(default_factory=Concurrency)
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.Server | None = None
    _thread: threading.Thread | None = None

    def start(self) -> HostileSmtpServer:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)
                )
            except BaseException as error:
                failure.append(error)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name=f"hostile-{self.mode}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def shut() -> None:
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shut(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.concurrency.opened()
        try:
            await self._dialogue(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            if not writer.is_closing():
                self.concurrency.now -= 1  # QUIT counted it out already otherwise
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _dialogue(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = self.mode
        if mode == "greet-421":
            writer.write(b"421 4.3.2 hostile.test too busy, try another host\r\n")
            await writer.drain()
            return
        if mode == "silent":
            await reader.read()  # until the client gives up
            return
        writer.write(b"220 hostile.test ESMTP\r\n")
        await writer.drain()
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                if mode == "endless":
                    while True:
                        writer.write(b"250-" + b"x" * 70 + b"\r\n")
                        await writer.drain()
                        await asyncio.sleep(0.001)
                if mode == "huge-line":
                    chunk = b"250-" + b"y" * (1024 * 1024)
                    for _ in range(10):
                        writer.write(chunk)
                        await writer.drain()
                    await reader.read()
                    return
                extensions = b"250-STARTTLS\r\n" if mode == "bad-tls" else b""
                writer.write(b"250-hostile.test\r\n" + extensions + b"250 8BITMIME\r\n")
            elif verb == b"STAR":
                writer.write(b"220 2.0.0 go ahead\r\n")
                await writer.drain()
                writer.write(b"\x15\x03\x03\x00\x02\x02\x28")  # a TLS alert, not a handshake
                await writer.drain()
                return
            elif verb == b"DATA":
                writer.write(b"354 go on\r\n")
                await writer.drain()
                if mode == "drop-in-data":
                    await reader.readline()
                    return
                data = await reader.readuntil(b"\r\n.\r\n")
                if mode == "stall-after-data":
                    await reader.read()
                    return
                self.accepted.append(data)
                writer.write(b"250 2.0.0 taken\r\n")
            elif verb == b"QUIT":
                # Counted out before the reply: a client that has read 221 sees it gone.
                self.concurrency.now -= 1
                writer.write(b"221 2.0.0 bye\r\n")
                await writer.drain()
                writer.close()
                return
            elif verb == b"MAIL" and mode == "rate-limit":
                writer.write(
                    b"421 4.7.28 Our system has detected an unusual rate of mail, try later\r\n"
                )
                await writer.drain()
                return
            elif verb == b"RCPT" and mode == "blocked":
                writer.write(
                    b"550 5.7.1 Service unavailable; client host blocked using Spamhaus\r\n"
                )
            else:  # MAIL, RCPT, RSET, NOOP
                writer.write(b"250 2.0.0 ok\r\n")
            await writer.drain()
