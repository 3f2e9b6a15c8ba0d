"""The ceiling beside each delivery figure: raw aiosmtplib, one process, reused sessions,
the same messages to the same smtp-sinks, measured in the same run. Machines differ in
speed; a figure divided by its ceiling compares across them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import aiosmtplib

CONNECTIONS = 16  # the ceiling's sessions, as ARCHITECTURE.md measured it


def plain_text_of_size(size: int) -> str:
    """The plain part of a bench email of about ``size`` bytes (0: a few words), the HTML part
    staying small: what the engine sends beside what ``message_of_size`` gives the ceiling."""
    return "Hello" if size < 1024 else ("y" * 76 + "\n") * (size // 77)


def message_of_size(size: int) -> bytes:
    body = ("x" * 76 + "\r\n") * max(1, size // 78)
    return (
        "From: News <news@example.com>\r\nTo: <user@example.org>\r\n"
        "Subject: ceiling\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n" + body
    ).encode()


async def smtp_ceiling(
    servers: Sequence[tuple[str, int]],
    messages: int,
    size: int,
    recipient: Callable[[int], str],
    connections: int = CONNECTIONS,
) -> float:
    """Messages per second that raw aiosmtplib sends to ``servers`` on ``connections``
    sessions (spread over the servers)."""
    payload = message_of_size(size)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(messages):
        queue.put_nowait(n)

    async def session(k: int) -> None:
        host, port = servers[k % len(servers)]
        client = aiosmtplib.SMTP(hostname=host, port=port, timeout=60)
        await client.connect()
        while not queue.empty():
            n = queue.get_nowait()
            await client.sendmail("news@example.com", [recipient(n)], payload)
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(session(k) for k in range(connections)))
    return messages / (time.perf_counter() - started)
