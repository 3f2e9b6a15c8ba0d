"""``python -m bench [WHICH] [--messages N] [--seconds S] [--events N]``: WHICH is api,
batch, commands, delivery, delivery-kafka, scale-out, direct, smtp, campaign, segments,
tracking, bounces, analytics, webhooks or all (default); ``python -m bench soak
[--minutes N] [--load F]`` runs the soak (not part of all: it lasts as long as it is asked
to)."""

from __future__ import annotations

import argparse

from bench import (
    analytics,
    api_accept,
    api_commands,
    batch,
    bounces,
    campaign,
    delivery,
    direct,
    scale_out,
    segments,
    smtp_submit,
    soak,
    tracking,
    webhooks,
)
from bench.machine import describe, print_table


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "which",
        nargs="?",
        default="all",
        choices=[
            "api",
            "batch",
            "commands",
            "delivery",
            "delivery-kafka",
            "scale-out",
            "direct",
            "smtp",
            "campaign",
            "segments",
            "tracking",
            "bounces",
            "analytics",
            "webhooks",
            "soak",
            "all",
        ],
    )
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--minutes", type=float, default=60.0, help="soak: how long")
    parser.add_argument("--load", type=float, default=0.3, help="soak: share of capacity")
    args = parser.parse_args()
    if args.which == "soak":
        soak.main(args.minutes, args.load)
        return
    rows: list[tuple[str, str, str]] = []
    if args.which in ("api", "all"):
        rows += api_accept.run(seconds=args.seconds)
        rows += api_accept.api_role_only(seconds=args.seconds)
    if args.which in ("batch", "all"):
        rows += batch.run()
    if args.which in ("commands", "all"):
        rows += api_commands.run(seconds=args.seconds)
    if args.which in ("delivery", "all"):
        rows += delivery.run(messages=args.messages)
        rows += delivery.run(messages=min(args.messages // 5, 10_000), size=delivery.LARGE)
    if args.which in ("delivery-kafka", "all"):
        rows += delivery.run(messages=args.messages, kafka=True)
    if args.which in ("scale-out", "all"):
        rows += scale_out.run(messages=min(args.messages, 20_000))
    if args.which in ("direct", "all"):
        rows += direct.run(messages=args.messages)
    if args.which in ("smtp", "all"):
        rows += smtp_submit.run()
    if args.which in ("campaign", "all"):
        rows += campaign.run()
    if args.which in ("segments", "all"):
        rows += segments.run()
    if args.which in ("tracking", "all"):
        rows += tracking.run(seconds=args.seconds)
    if args.which in ("bounces", "all"):
        rows += bounces.run()
    if args.which in ("analytics", "all"):
        rows += analytics.run(events=args.events)
    if args.which in ("webhooks", "all"):
        rows += webhooks.run(seconds=max(args.seconds, 20))
    print_table("Machine", [(k, v, "") for k, v in describe().items()])
    print_table("Sendstream", rows)


if __name__ == "__main__":
    main()
