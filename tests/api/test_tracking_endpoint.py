"""``/t/…`` through ``TrackingEndpoint``, in process, with an in-memory recorder."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from uuid import UUID, uuid4

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from api.tracking import PIXEL_GIF, TrackingEndpoint
from domain.tracking import click_url, open_url, rewrite_html, sign_token, unsubscribe_url

KEY = b"test tracking key"
BASE = "http://tracking.test"
AGENT = "Mozilla/5.0 (Macintosh) Test"


@dataclass
class MemoryRecorder:
    links: dict[UUID, list[str]] = field(default_factory=dict)
    opens: list[tuple[UUID, str, str]] = field(default_factory=list)
    clicks: list[tuple[UUID, int, str, str]] = field(default_factory=list)
    unsubscribes: list[tuple[UUID, str, str, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record_open(self, message_id: UUID, ip: str, user_agent: str) -> None:
        with self.lock:
            self.opens.append((message_id, ip, user_agent))

    def record_click(
        self, message_id: UUID, link_index: int, ip: str, user_agent: str
    ) -> str | None:
        urls = self.links.get(message_id)
        if urls is None or not 0 <= link_index < len(urls):
            return None
        with self.lock:
            self.clicks.append((message_id, link_index, ip, user_agent))
        return urls[link_index]

    def record_unsubscribe(
        self, message_id: UUID, ip: str, user_agent: str, one_click: bool
    ) -> bool:
        if message_id not in self.links:
            return False
        with self.lock:
            self.unsubscribes.append((message_id, ip, user_agent, one_click))
        return True

    def nothing_recorded(self) -> bool:
        return not (self.opens or self.clicks or self.unsubscribes)


async def teapot(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 418, "headers": []})
    await send({"type": "http.response.body", "body": b"teapot"})


@pytest.fixture
def recorder() -> MemoryRecorder:
    return MemoryRecorder()


@pytest.fixture
def message(recorder: MemoryRecorder) -> UUID:
    message_id = uuid4()
    html = (
        '<a href="https://shop.example/?a=1&amp;b=2">shop</a>'
        '<a href="https://blog.example/é">blog</a>'
    )
    _, urls = rewrite_html(html, BASE, message_id, KEY)
    recorder.links[message_id] = urls
    return message_id


@pytest.fixture(params=[False, True], ids=["direct", "offload"])
async def client(
    request: pytest.FixtureRequest, recorder: MemoryRecorder
) -> AsyncIterator[httpx.AsyncClient]:
    app = TrackingEndpoint(teapot, recorder=recorder, key=KEY, offload=request.param)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4321))
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE, headers={"User-Agent": AGENT}
    ) as http:
        yield http


def path(url: str) -> str:
    return url.removeprefix(BASE)


def assert_no_cache(response: httpx.Response) -> None:
    assert response.headers["cache-control"] == "no-store, no-cache, must-revalidate, max-age=0"
    assert response.headers["pragma"] == "no-cache"
    assert response.headers["expires"] == "0"


async def test_pixel_answers_the_gif_and_records_the_open(
    client: httpx.AsyncClient, recorder: MemoryRecorder, message: UUID
) -> None:
    response = await client.get(path(open_url(BASE, message, KEY)))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content == PIXEL_GIF and len(PIXEL_GIF) == 43
    assert PIXEL_GIF.startswith(b"GIF89a\x01\x00\x01\x00") and PIXEL_GIF.endswith(b";")
    assert_no_cache(response)
    assert recorder.opens == [(message, "203.0.113.7", AGENT)]


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        sign_token("o", UUID(int=1), 0, b"another key"),
        sign_token("c", UUID(int=1), 0, KEY),  # a valid token of another kind
        sign_token("o", UUID(int=1), 0, KEY)[:-1] + "A",
    ],
)
async def test_a_forged_pixel_still_answers_the_gif_but_records_nothing(
    client: httpx.AsyncClient, recorder: MemoryRecorder, token: str
) -> None:
    response = await client.get(f"/t/o/{token}.gif")
    assert response.status_code == 200
    assert response.content == PIXEL_GIF
    assert_no_cache(response)
    assert recorder.nothing_recorded()


async def test_head_on_the_pixel_records_nothing(
    client: httpx.AsyncClient, recorder: MemoryRecorder, message: UUID
) -> None:
    response = await client.head(path(open_url(BASE, message, KEY)))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert recorder.nothing_recorded()


async def test_click_redirects_to_the_original_url(
    client: httpx.AsyncClient, recorder: MemoryRecorder, message: UUID
) -> None:
    response = await client.get(path(click_url(BASE, message, 0, KEY)) + "?next=https://evil/")
    assert response.status_code == 302
    assert response.headers["location"] == "https://shop.example/?a=1&b=2"
    assert "no-store" in response.headers["cache-control"]
    assert recorder.clicks == [(message, 0, "203.0.113.7", AGENT)]
    response = await client.get(path(click_url(BASE, message, 1, KEY)))
    assert response.headers["location"] == "https://blog.example/%C3%A9"
    assert [click[1] for click in recorder.clicks] == [0, 1]


async def test_an_altered_click_token_is_404_and_records_nothing(
    client: httpx.AsyncClient, recorder: MemoryRecorder, message: UUID
) -> None:
    token = sign_token("c", message, 0, KEY)
    for altered in [
        token[:5] + ("B" if token[5] != "B" else "C") + token[6:],
        token[:-1],
        sign_token("c", message, 0, b"another key"),
        sign_token("u", message, 0, KEY),
    ]:
        response = await client.get(f"/t/c/{altered}")
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert "location" not in response.headers
    assert recorder.nothing_recorded()


async def test_a_click_on_a_link_the_recorder_does_not_know_is_404(
    client: httpx.AsyncClient, recorder: MemoryRecorder, message: UUID
) -> None:
    for url in [click_url(BASE, message, 2, KEY), click_url(BASE, uuid4(), 0, KEY)]:
        response = await client.get(path(url))
        assert response.status_code == 404
        assert "location" not in response.headers
    assert recorder.nothing_recorded()


async def test_a_stored_url_that_cannot_be_a_location_is_not_redirected_to(
    client: httpx.AsyncClient, recorder: MemoryRecorder
) -> None:
    message_id = uuid4()
    recorder.links[message_id] = ["https://a.example/\r\nSet-Cookie: x=1", "javascript:alert(1)"]
    for index in (0, 1):
        response = await client.get(path(click_url(BASE, message_id, index, KEY)))
        assert response.status_code == 404
        assert "set-cookie" not in response.headers


async def test_unsubscribe_get_shows_a_form_and_records_nothing(
    client: httpx.AsyncClient, recorder: MemoryRecorder, message: UUID
) -> None:
    response = await client.get(path(unsubscribe_url(BASE, message, KEY)))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert '<form method="post">' in response.text
    assert_no_cache(response)
    assert recorder.nothing_recorded()


async def test_one_click_post_records_a_one_click_unsubscribe(
    client: httpx.AsyncClient, recorder: MemoryRecorder, message: UUID
) -> None:
    response = await client.post(
        path(unsubscribe_url(BASE, message, KEY)), data={"List-Unsubscribe": "One-Click"}
    )
    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    assert recorder.unsubscribes == [(message, "203.0.113.7", AGENT, True)]


async def test_one_click_post_as_multipart(
    client: httpx.AsyncClient, recorder: MemoryRecorder, message: UUID
) -> None:
    response = await client.post(
        path(unsubscribe_url(BASE, message, KEY)),
        files={"List-Unsubscribe": (None, "One-Click")},
    )
    assert response.status_code == 200
    assert recorder.unsubscribes == [(message, "203.0.113.7", AGENT, True)]


async def test_the_pages_form_records_an_unsubscribe_that_is_not_one_click(
    client: httpx.AsyncClient, recorder: MemoryRecorder, message: UUID
) -> None:
    response = await client.post(path(unsubscribe_url(BASE, message, KEY)), data={"confirm": "1"})
    assert response.status_code == 200
    assert recorder.unsubscribes == [(message, "203.0.113.7", AGENT, False)]


async def test_unsubscribe_with_a_bad_token_or_unknown_message_is_404(
    client: httpx.AsyncClient, recorder: MemoryRecorder, message: UUID
) -> None:
    wrong_kind = f"/t/u/{sign_token('c', message, 0, KEY)}"
    unknown = path(unsubscribe_url(BASE, uuid4(), KEY))
    for url in [wrong_kind, "/t/u/garbage"]:
        assert (await client.get(url)).status_code == 404
    # The page does not look the message up: only the POST reaches the recorder.
    assert (await client.get(unknown)).status_code == 200
    for url in [wrong_kind, "/t/u/garbage", unknown]:
        response = await client.post(url, data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 404
    assert recorder.nothing_recorded()


async def test_an_oversized_unsubscribe_body_is_refused(
    client: httpx.AsyncClient, recorder: MemoryRecorder, message: UUID
) -> None:
    response = await client.post(
        path(unsubscribe_url(BASE, message, KEY)), content=b"x" * (17 * 1024)
    )
    assert response.status_code == 413
    assert recorder.nothing_recorded()


@pytest.mark.parametrize(
    "url", ["/t/", "/t/x/abc", "/t/o/", "/t/o/abc", "/t/c/", "/t/u/", "/t/o/abc.png"]
)
async def test_other_paths_under_t_are_404(
    client: httpx.AsyncClient, recorder: MemoryRecorder, url: str
) -> None:
    assert (await client.get(url)).status_code == 404
    assert recorder.nothing_recorded()


async def test_wrong_methods_are_405(client: httpx.AsyncClient, message: UUID) -> None:
    response = await client.post(path(click_url(BASE, message, 0, KEY)))
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    response = await client.delete(path(unsubscribe_url(BASE, message, KEY)))
    assert response.status_code == 405


@pytest.mark.parametrize("url", ["/", "/t", "/api/v1/email", "/tracking/o/x.gif", "/healthz"])
async def test_everything_else_passes_through(
    client: httpx.AsyncClient, recorder: MemoryRecorder, url: str
) -> None:
    assert (await client.get(url)).status_code == 418
    assert (await client.post(url)).status_code == 418
    assert recorder.nothing_recorded()


@pytest.mark.parametrize(("trust", "expected"), [(False, "203.0.113.7"), (True, "198.51.100.1")])
async def test_forwarded_for_is_used_only_when_trusted(
    recorder: MemoryRecorder, message: UUID, trust: bool, expected: str
) -> None:
    app = TrackingEndpoint(teapot, recorder, KEY, trust_forwarded=trust)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4321))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        await http.get(
            path(open_url(BASE, message, KEY)),
            headers={"X-Forwarded-For": "198.51.100.1, 10.0.0.1", "User-Agent": AGENT},
        )
    assert recorder.opens == [(message, expected, AGENT)]


async def test_a_failing_recorder_still_answers_the_pixel(message: UUID) -> None:
    class Broken(MemoryRecorder):
        def record_open(self, message_id: UUID, ip: str, user_agent: str) -> None:
            raise RuntimeError("writer down")

    app = TrackingEndpoint(teapot, Broken(), KEY)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        response = await http.get(path(open_url(BASE, message, KEY)))
    assert response.status_code == 200 and response.content == PIXEL_GIF
