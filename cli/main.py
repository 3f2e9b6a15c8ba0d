"""``sendstream``: serve the engine, bootstrap an account, rebuild the reporting tables."""

from __future__ import annotations

import logging
import secrets
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Annotated
from uuid import UUID

import orjson
import typer
from pydantic import ValidationError

from adapters.faults import LibraryFaultsInOneLine
from engine.runtime.composition import ALL_ROLES, Engine, Role, tune_garbage_collector
from engine.runtime.processes import (
    API_PROCESS_ROLES,
    WorkerProcess,
    stop_when_parent_exits,
)
from engine.runtime.processes import worker_processes as worker_processes_for
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
    single_process: Annotated[
        bool,
        typer.Option(
            "--single-process",
            help="Run every role in this one process instead of putting delivery, the "
            "scheduler, the relay and the webhook worker in a second one, more delivery in "
            "DELIVERY_PROCESSES - 1 more and more webhook callers in WEBHOOK_PROCESSES - 1 "
            "more (which use the other cores)",
        ),
    ] = False,
    parent_pid: Annotated[
        int | None, typer.Option(hidden=True, help="Stop when this process is gone")
    ] = None,
) -> None:
    """Run the API and the workers: by default in an API process, a worker process,
    DELIVERY_PROCESSES - 1 delivery processes and WEBHOOK_PROCESSES - 1 webhook callers,
    or only the given roles in this process."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # kafka-python's INFO is a line per connection and rebalance step.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(LibraryFaultsInOneLine())
    settings = load_settings()
    worker_processes: list[WorkerProcess] = []
    if role:
        roles = frozenset(role)
    elif single_process:
        roles = ALL_ROLES
    else:
        roles = API_PROCESS_ROLES
        worker_processes = worker_processes_for(settings)
    if settings.log_format == "json":
        from adapters.log_format import JsonFormatter

        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter(",".join(sorted(r.value for r in roles))))
    engine = Engine(settings, roles=roles)
    engine.start_workers()
    if Role.API not in roles and settings.metrics_port and parent_pid is None:
        from adapters.metrics import serve_metrics

        serve_metrics(settings.metrics_port)
    for worker_process in worker_processes:
        worker_process.start()
    tune_garbage_collector()
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
            if parent_pid is not None:
                stop_when_parent_exits(parent_pid, stop)
            stop.wait()
    finally:
        for worker_process in worker_processes:
            worker_process.request_stop()
        for worker_process in worker_processes:
            worker_process.stop()
        engine.close()


@cli.command()
def bootstrap(
    domain: Annotated[str, typer.Option(help="The sender domain, e.g. example.com")],
    username: Annotated[
        str | None,
        typer.Option(help="The login for User.Login; default: admin@<domain>"),
    ] = None,
    agency: Annotated[
        str | None,
        typer.Option(help="The AccountID of the agency account the new account is a client of"),
    ] = None,
) -> None:
    """Create an account (with a login), a sender domain and a sender API key; print them and
    the generated password once, as JSON."""
    from domain.errors import RequestRejected
    from engine.accounts.domain_names import DomainNameInvalid, normalise_domain_name
    from engine.accounts.passwords import new_password

    try:
        name = normalise_domain_name(domain)
    except DomainNameInvalid as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    engine = Engine(load_settings(), roles=frozenset())
    try:
        if username is not None and engine.gateway.username_taken(username):
            typer.echo(f"error: the username {username!r} is taken", err=True)
            raise typer.Exit(2)
        login = username or f"admin@{name}"
        while engine.gateway.username_taken(login):  # another account of the same domain
            login = f"admin-{secrets.token_hex(3)}@{name}"
        agency_id = None
        if agency is not None:
            try:
                agency_id = engine.agencies.agency(agency).id  # before anything is made
            except RequestRejected as refused:
                typer.echo(f"error: {refused.errors[0].message}", err=True)
                raise typer.Exit(2) from None
        password = new_password()
        if agency_id is None:
            result = engine.app.bootstrap(name)
        else:
            result = engine.agencies.open_client(agency_id, name)
            result["AgencyAccountID"] = str(agency_id)
        engine.gateway.set_login(UUID(result["AccountID"]), login, password)
        result.update({"Username": login, "Password": password})
    finally:
        engine.close()
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")


@cli.command("import-subscribers")
def import_subscribers(
    path: Annotated[str, typer.Argument(help="A CSV file with a header row, or a .json array")],
    account_key: Annotated[str, typer.Option(help="The account's API key (acc_…)")],
    list_id: Annotated[str, typer.Option(help="The ListID to import into")],
) -> None:
    """Import subscribers into a list from a file, with a progress bar; prints the report."""
    from tqdm import tqdm

    from api.permissions import require_role
    from domain.errors import RequestRejected
    from engine.accounts.callers import acting_as
    from engine.campaigns.commands import rows_from_file

    engine = Engine(load_settings(), roles=frozenset())
    try:
        try:
            # As Subscribers.Import: the key's role must allow it, and the audit trail
            # names the key and this command.
            caller = engine.gateway.identify({"APIKey": account_key})
            require_role(caller, "Subscribers.Import")
            subscribers = engine.campaigns._own_list(caller.account, {"ListID": list_id})
        except RequestRejected as rejected:
            typer.echo(f"error: {rejected.errors[0].message}", err=True)
            raise typer.Exit(2) from None
        rows = rows_from_file(path)
        with (
            acting_as(caller, "sendstream import-subscribers", uuid.uuid4().hex),
            tqdm(total=len(rows), unit="row", desc="importing") as bar,
        ):
            done = 0

            def progress(seen: int) -> None:
                nonlocal done
                bar.update(seen - done)
                done = seen

            report = engine.campaigns.import_rows(subscribers, rows, progress=progress)
    finally:
        engine.close()
    sys.stdout.write(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")


@cli.command("replay-projections")
def replay_projections() -> None:
    """Rebuild the ClickHouse tables from the event store; the old tables serve until the swap.
    (The audit trail is kept as it is: its reader keeps it whole.)"""
    from engine.reporting.replay import replay

    engine = Engine(load_settings(), roles=frozenset())
    try:
        replay(
            engine.app, engine.reporting, progress=True, topology=engine.settings.reporting_topology
        )
    finally:
        engine.close()


@cli.command()
def doctor() -> None:
    """Check this machine for what direct delivery needs (reverse DNS and SPF of the
    sending addresses, the clock, disk space) and print what to fix; exit 1 if anything."""
    from engine.runtime.doctor import FIX, diagnose

    settings = load_settings()
    engine = Engine(settings, roles=frozenset())
    try:
        findings = diagnose(settings, engine.app)
    finally:
        engine.close()
    width = max(len(f.check) for f in findings)
    for finding in findings:
        typer.echo(f"{finding.check:<{width}}  {finding.state:<11}  {finding.detail}")
    if any(f.state == FIX for f in findings):
        raise typer.Exit(1)


@cli.command()
def backup(
    target: Annotated[Path, typer.Argument(help="A new (or empty) folder for the backup")],
) -> None:
    """Back up the embedded installation's data folder while it runs: the SQLite stores by
    SQLite's online backup, and the secret the keys derive from (adapters/backup.py)."""
    from adapters.backup import BackupError, take_backup

    settings = load_settings()
    if settings.eventstore_url and not settings.eventstore_url.startswith("sqlite"):
        typer.echo("backup: the event store is PostgreSQL here: back it up with pg_dump", err=True)
        raise typer.Exit(2)
    try:
        manifest = take_backup(Path(settings.data_dir), target)
    except BackupError as error:
        typer.echo(f"backup: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"backed up {len(manifest.files)} files to {target} "
               f"(events up to position {manifest.last_position})")  # fmt: skip


@cli.command()
def restore(
    source: Annotated[Path, typer.Argument(help="A folder `sendstream backup` wrote")],
) -> None:
    """Restore a backup into SENDSTREAM_DATA_DIR (a new or empty folder), then make the
    reporting tables again from the restored events."""
    from adapters.backup import BackupError, restore_backup
    from engine.reporting.audit import rebuild_audit_log
    from engine.reporting.replay import replay

    settings = load_settings()
    try:
        manifest = restore_backup(source, Path(settings.data_dir))
    except BackupError as error:
        typer.echo(f"restore: {error}", err=True)
        raise typer.Exit(1) from None
    engine = Engine(settings, roles=frozenset())
    try:
        replay(engine.app, engine.reporting, progress=True,
               topology=engine.settings.reporting_topology)  # fmt: skip
        rebuild_audit_log(engine.app, engine.tracking, engine.reporting)
    finally:
        engine.close()
    typer.echo(
        f"restored {len(manifest.files)} files into {settings.data_dir} (events up to "
        f"position {manifest.last_position}); the reporting tables were made again"
    )


@cli.command()
def schema(
    cluster: Annotated[
        str | None,
        typer.Option(help="The cluster's name; default: CLICKHOUSE_CLUSTER (none: one server)"),
    ] = None,
) -> None:
    """Print the reporting tables' DDL, as the engine runs it at its first start."""
    from projections.schema import Topology, schema_statements

    topology = Topology(load_settings().clickhouse_cluster if cluster is None else cluster)
    for statement in schema_statements(topology):
        sys.stdout.write(statement.strip() + ";\n\n")


@cli.command()
def status(
    json: Annotated[
        bool, typer.Option("--json", help="One JSON document instead of tables")
    ] = False,
) -> None:
    """Who leads each role that runs once, and how far behind each reader of the stream is."""
    from engine.runtime.status import installation_status

    engine = Engine(load_settings(), roles=frozenset())
    try:
        report = installation_status(engine)
    finally:
        engine.close()
    if json:
        sys.stdout.write(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    lines = ["role        holder"]
    lines += [f"{role:<11} {holder or 'nobody'}" for role, holder in report.leaders.items()]
    lines += ["", f"{'reader':<28} {'where':<32} {'position':>10} {'end':>10} {'lag':>8}"]
    for follower in report.followers:
        lines.append(
            f"{follower.reader:<28} {follower.where:<32} "
            f"{_shown(follower.position):>10} {_shown(follower.end):>10} {_shown(follower.lag):>8}"
        )
    sys.stdout.write("\n".join(lines) + "\n")


def _shown(value: int | None) -> str:
    return "-" if value is None else str(value)


def load_settings() -> Settings:
    """The settings from the environment; a bad one ends the command with its reason, not a
    traceback (exit status 2, as for a bad option)."""
    try:
        return Settings()
    except ValidationError as error:
        for problem in error.errors():
            where = ".".join(str(part) for part in problem["loc"]) or "settings"
            reason = str(problem["msg"]).removeprefix("Value error, ")
            sys.stderr.write(
                f"sendstream: {where}: {reason}\n" if problem["loc"] else f"sendstream: {reason}\n"
            )
        raise SystemExit(2) from None


def main() -> None:
    cli()
