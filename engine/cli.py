"""``sendstream``: serve the engine, bootstrap an account, rebuild the reporting tables."""

from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
from typing import Annotated

import orjson
import typer

from engine.runtime import ALL_ROLES, Engine, Role
from engine.settings import Settings

cli = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address the API listens on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port the API listens on")] = 8000,
    role: Annotated[
        list[Role] | None,
        typer.Option(help="Run only these roles (repeatable); default: all of them"),
    ] = None,
) -> None:
    """Run the API and the workers (all roles in one process unless --role is given)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    roles = frozenset(role) if role else ALL_ROLES
    engine = Engine(Settings(), roles=roles)
    engine.start_workers()
    # What was built at start lives for the whole run: keep the collector from rescanning it.
    gc.freeze()
    try:
        if Role.API in roles:
            import uvicorn

            from api.app import create_app

            uvicorn.run(
                create_app(engine), host=host, port=port, log_level="warning", access_log=False
            )
        else:
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            stop.wait()
    finally:
        engine.close()


@cli.command()
def bootstrap(
    domain: Annotated[str, typer.Option(help="The sender domain, e.g. example.com")],
) -> None:
    """Create an account, a sender domain and a sender API key; print them once as JSON."""
    from engine.domains import DomainNameInvalid, normalise_domain_name

    try:
        name = normalise_domain_name(domain)
    except DomainNameInvalid as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    engine = Engine(Settings(), roles=frozenset())
    try:
        result = engine.app.bootstrap(name)
    finally:
        engine.close()
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")


@cli.command("replay-projections")
def replay_projections() -> None:
    """Rebuild the ClickHouse tables from the event store; the old tables serve until the swap."""
    from engine.replay import replay

    engine = Engine(Settings(), roles=frozenset())
    try:
        replay(engine, progress=True)
    finally:
        engine.close()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
