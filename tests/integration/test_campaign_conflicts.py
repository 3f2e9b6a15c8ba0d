"""A lifecycle command that meets the campaign runner's save: the runner records a
campaign's progress while Pause, Resume or Cancel is deciding, and the command's save then
conflicts. It is judged again on the campaign as it is now, never answered with a 500."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx

from domain.campaign import Campaign, CampaignStatus
from engine.runtime.composition import Engine, Role

Client = Callable[[Engine], httpx.AsyncClient]


async def test_cancel_that_meets_the_runner_starting_the_campaign_cancels_it(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    # Without the runner role: the test plays the runner's part at the moment it chooses.
    engine = make_engine(roles=frozenset({Role.API}))
    client = api_client(engine)
    key = engine.app.bootstrap("shop.example")["AccountAPIKey"]

    async def call(command: str, **params: Any) -> dict[str, Any]:
        answer = await client.post("/api.php", json={"APIKey": key, "Command": command, **params})
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    listed = await call("List.Create", ListName="L", Fields="EmailAddress")
    email = await call(
        "Email.Create", Subject="S", FromName="N", FromEmail="a@shop.example", MessagePlain="hi"
    )
    campaign_id = (await call("Campaign.Create", CampaignName="C"))["CampaignID"]
    await call("Campaign.Update", CampaignID=campaign_id, RelEmailID=email["EmailID"],
               RecipientListsAndSegments=listed["ListID"])  # fmt: skip
    assert (await call("Campaign.Approve", CampaignID=campaign_id))["Success"] is True

    app = engine.app
    save = app.save
    runner_started: list[UUID] = []

    def save_after_the_runner(*aggregates: Any, **kwargs: Any) -> Any:
        if not runner_started and any(isinstance(a, Campaign) for a in aggregates):
            # The runner, between the command's read and its save, starts the campaign.
            running = app._get(UUID(campaign_id), Campaign)
            runner_started.append(running.start_instance(datetime.now(UTC)))
            save(running)
        return save(*aggregates, **kwargs)

    app.save = save_after_the_runner  # type: ignore[method-assign]
    answer = await call("Campaign.Cancel", CampaignID=campaign_id)
    app.save = save  # type: ignore[method-assign]

    assert answer["Success"] is True, answer
    assert runner_started
    campaign = app._get(UUID(campaign_id), Campaign)
    assert campaign.status is CampaignStatus.CANCELLED
    assert campaign.current_instance == runner_started[0]
