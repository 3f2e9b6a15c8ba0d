"""``python -m bench.mime_speed``: time ``adapters.mime.build_message`` per message.

"cold" renders a content never seen before (the render cache is emptied
before every call: a one-recipient submission); "warm" renders another copy
of a content already rendered (every further recipient of a submission).
"""

from __future__ import annotations

import base64
import os
import timeit
from collections.abc import Callable

from adapters import mime
from adapters.mime import build_message
from bench.machine import describe, print_table
from domain.content import Address, Attachment, EmailContent

SIMPLE = EmailContent(
    subject="Burst 1",
    sender=Address("news@example.com", "News"),
    to=(Address("user1@example.org", "User"),),
    html="<p>Hello</p>",
    plain="Hello",
)
WITH_ATTACHMENT = EmailContent(
    subject="Your report",
    sender=Address("news@example.com", "News"),
    to=(Address("user1@example.org", "User"),),
    html="<p>Hello</p>",
    plain="Hello",
    attachments=(
        Attachment("report.pdf", "application/pdf", base64.b64encode(os.urandom(100_000)).decode()),
    ),
)
UNICODE = EmailContent(
    subject="Ваш заказ номер 12345 был отправлен сегодня курьерской службой доставки",
    sender=Address("news@example.com", "Zoë Ñandú"),
    to=(Address("user1@example.org", "Jörg Müller"),),
    html="<p>" + "Grüße aus Köln — 東京 " * 50 + "</p>",
    plain="Grüße aus Köln — 東京\n" * 50,
    tags=("welcome", "été"),
    headers=(("X-Campaign", "spring-sale"),),
)


def _per_call(fn: Callable[[], object], number: int) -> float:
    """Best of five runs, seconds per call."""
    return min(timeit.repeat(fn, number=number, repeat=5)) / number


def run() -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for label, content, number in (
        ("simple (plain + html)", SIMPLE, 2000),
        ("100 KB attachment", WITH_ATTACHMENT, 200),
        ("unicode headers and bodies", UNICODE, 1000),
    ):

        def warm(content: EmailContent = content) -> bytes:
            return build_message(
                content,
                recipient=Address("user1@example.org"),
                message_id="01JD3Q8Z6W.42",
                domain="example.com",
            )

        def cold(content: EmailContent = content) -> bytes:
            mime._CACHE.clear()
            return warm(content)

        target = "< 0.3 ms" if content is SIMPLE else ""
        rows.append((f"mime {label}, cold", f"{_per_call(cold, number) * 1e3:.3f} ms", target))
        rows.append((f"mime {label}, warm", f"{_per_call(warm, number) * 1e3:.3f} ms", target))
    return rows


def main() -> None:
    print_table("Machine", [(k, v, "") for k, v in describe().items()])
    print_table("build_message per message", run())


if __name__ == "__main__":
    main()
