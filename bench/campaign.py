"""A 100,000-recipient campaign, embedded mode, as ``sendstream serve`` runs it: the list
imported from CSV through ``Subscribers.Import``, then Approve → every message accepted by
Postfix's smtp-sink (Delivered in ClickHouse), with Campaign.Get's live EmailsPerSecond."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from uuid import UUID

from tqdm import tqdm

from engine.runtime.composition import Engine
from engine.runtime.processes import API_PROCESS_ROLES, WorkerProcess
from engine.settings import Settings
from tests.services import start_smtp_sink


def _csv(count: int) -> str:
    cities = ["Berlin", "Lisbon", "Osaka", "Quito", "Lagos", "Perth"]
    lines = ["EmailAddress,FirstName,City"]
    lines += [f"reader{n}@example.org,Reader{n},{cities[n % 6]}" for n in range(count)]
    return "\n".join(lines)


def run(recipients: int = 100_000) -> list[tuple[str, str, str]]:
    workdir = Path(tempfile.mkdtemp(prefix="sendstream-bench-"))
    sink = start_smtp_sink()
    settings = Settings(
        SENDSTREAM_DATA_DIR=workdir / "var",
        SMTP_RELAY_URL=sink.url,
        SMTP_SUBMISSION_PORTS="",
        BOUNCE_SMTP_PORTS="",
        INBOUND_SMTP_PORTS="",
        API_RATE_LIMIT="1000000/second",
        SEND_RATE_LIMIT="1000000/second",
    )
    engine = Engine(settings, roles=API_PROCESS_ROLES)
    workers = WorkerProcess(settings)
    live_rates: list[float] = []
    try:
        keys = engine.app.bootstrap("shop.example")
        account = engine.app.account(UUID(keys["AccountID"]))
        engine.start_workers()
        workers.start()
        campaigns = engine.campaigns
        created = campaigns.create_list(
            account, {"ListName": "Everyone", "Fields": "EmailAddress,FirstName,City"}
        )
        data = _csv(recipients)
        started = time.perf_counter()
        report = campaigns.import_subscribers(
            account, {"ListID": created["ListID"], "Format": "csv", "Data": data}
        )
        imported_in = time.perf_counter() - started
        assert report["Imported"] == recipients, report
        email = campaigns.create_email(
            account,
            {
                "Subject": "Hello %Subscriber:FirstName|there%",
                "FromName": "Shop",
                "FromEmail": "news@shop.example",
                "MessageHTML": "<p>Hi %Subscriber:FirstName%, news from %Subscriber:City%</p>",
            },
        )
        campaign = campaigns.create_campaign(account, {"CampaignName": "Bench"})
        campaign_id = campaign["CampaignID"]
        campaigns.update_campaign(
            account,
            {
                "CampaignID": campaign_id,
                "RelEmailID": email["EmailID"],
                "RecipientListsAndSegments": created["ListID"],
                "ScheduleType": "Immediate",
            },
        )
        started = time.perf_counter()
        campaigns.approve(account, {"CampaignID": campaign_id})
        delivered = 0
        with tqdm(total=recipients, unit="msg", desc="delivered") as bar:
            while delivered < recipients:
                time.sleep(1.0)
                got = campaigns.get_campaign(
                    account, {"campaignid": campaign_id, "retrievestatistics": "true"}
                )["Campaign"]
                bar.update(got["TotalDelivered"] - delivered)
                delivered = got["TotalDelivered"]
                rate = got["CampaignThroughput"]["EmailsPerSecond"]
                if rate:
                    live_rates.append(rate)
                if time.perf_counter() - started > 900:
                    raise RuntimeError(f"only {delivered} of {recipients} delivered in 900 s")
        sent_in = time.perf_counter() - started
    finally:
        workers.stop()
        engine.close()
        sink.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return [
        (f"import of {recipients} subscribers from CSV (s)", f"{imported_in:.1f}", "<= 10"),
        (f"campaign to {recipients}: Approve → all delivered to smtp-sink (s)", f"{sent_in:.1f}",
         "<= 100"),
        ("campaign messages per s, end to end", f"{recipients / sent_in:.0f}", ""),
        ("Campaign.Get EmailsPerSecond during the run (median / max)",
         f"{statistics.median(live_rates):.0f} / {max(live_rates):.0f}" if live_rates else "-",
         ""),
    ]  # fmt: skip


if __name__ == "__main__":
    from bench.machine import print_table

    print_table("Campaign", run())
