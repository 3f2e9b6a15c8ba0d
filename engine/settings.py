"""Every knob of the engine, read once from the environment at start (see the README table)."""

from __future__ import annotations

from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.local_addresses import is_local_address
from domain.routing import INVALID_IP_ADDRESS, SourceAddress, parse_sources
from domain.shaping import ShapingFileError, ShapingRules, parse_shaping
from domain.share import DeliveryShare
from projections.schema import Topology

# The event store's JSON is written by orjson, in eventsourcing's own format.
TRANSCODER = "adapters.transcoder:OrjsonTranscoder"
MAPPER = "adapters.event_metadata:MetadataMapper"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    data_dir: Path = Field(default=Path("var"), alias="SENDSTREAM_DATA_DIR")
    eventstore_url: str = Field(default="", alias="EVENTSTORE_URL")
    # How long a request waits for a PostgreSQL connection (the server restarting) before
    # it is refused with 503 and Retry-After.
    eventstore_wait_seconds: int = Field(default=5, ge=1, le=300, alias="EVENTSTORE_WAIT_SECONDS")
    # What a commit to the SQLite files waits for: "normal" survives kill -9, "full" power
    # loss too (an fsync per commit); see adapters/event_store.py and the README.
    sqlite_synchronous: Literal["normal", "full"] = Field(
        default="normal", alias="SQLITE_SYNCHRONOUS"
    )

    @field_validator("sqlite_synchronous", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    kafka_bootstrap_servers: str = Field(default="", alias="KAFKA_BOOTSTRAP_SERVERS")
    kafka_topic_prefix: str = Field(default="sendstream", alias="KAFKA_TOPIC_PREFIX")
    # Partitions of each topic a Sendstream process creates: the most processes of one
    # role (delivery, projector, webhooks) that share a stream's work.
    kafka_partitions: int = Field(default=12, ge=1, le=1000, alias="KAFKA_PARTITIONS")
    clickhouse_url: str = Field(default="", alias="CLICKHOUSE_URL")
    # A cluster of the server's remote_servers: the reporting tables are then replicated,
    # sharded by message and read through Distributed tables (projections/schema.py).
    clickhouse_cluster: str = Field(default="", max_length=200, alias="CLICKHOUSE_CLUSTER")
    # Raw events older than this are deleted; the rollups keep their counts. 0 keeps them.
    events_retention_days: int = Field(default=90, ge=0, alias="EVENTS_RETENTION_DAYS")
    # sandbox: kept, never sent; relay: through SMTP_RELAY_URL; direct: to each recipient
    # domain's own mail servers. Unset: relay when SMTP_RELAY_URL is set, else sandbox.
    delivery_mode: Literal["", "sandbox", "relay", "direct"] = Field(
        default="", alias="DELIVERY_MODE"
    )
    smtp_relay_url: str = Field(default="", alias="SMTP_RELAY_URL")
    smtp_pool_size: int = Field(default=8, alias="SMTP_POOL_SIZE")
    direct_smtp_port: int = Field(default=25, ge=1, le=65535, alias="DIRECT_SMTP_PORT")
    # MX hosts on loopback, private, link-local or reserved addresses are refused unless set.
    direct_allow_private_addresses: bool = Field(
        default=False, alias="DIRECT_ALLOW_PRIVATE_ADDRESSES"
    )
    # This machine's sending addresses for direct delivery: "ADDRESS=EHLO-NAME[*WEIGHT], …".
    sending_addresses: str = Field(default="", alias="SENDING_ADDRESSES")
    # Traffic shaping per destination provider (TOML); unset: engine/delivery/shaping.toml.
    shaping_file: str = Field(default="", alias="SHAPING_FILE")
    direct_idle_seconds: float = Field(default=5.0, gt=0, alias="DIRECT_IDLE_SECONDS")
    direct_timeout_seconds: float = Field(default=60.0, gt=0, alias="DIRECT_TIMEOUT_SECONDS")
    # Recipient domains' MTA-STS policies (RFC 8461) are applied in direct delivery.
    mta_sts: bool = Field(default=True, alias="MTA_STS")
    # CA certificates (PEM) that MX hosts and MTA-STS policy hosts are checked against.
    tls_ca_file: str = Field(default="", alias="TLS_CA_FILE")
    delivery_concurrency: int = Field(default=64, alias="DELIVERY_CONCURRENCY")
    campaign_fanout_window: int = Field(default=20_000, alias="CAMPAIGN_FANOUT_WINDOW")
    duplicate_campaign_window_seconds: int = Field(
        default=3600, alias="DUPLICATE_CAMPAIGN_WINDOW_SECONDS"
    )
    recipient_domain_concurrency: int = Field(default=20, alias="RECIPIENT_DOMAIN_CONCURRENCY")
    recipient_domain_rate: float = Field(default=0, alias="RECIPIENT_DOMAIN_RATE")
    delivery_retry_schedule: str = Field(
        default="60,300,900,1800,3600,7200,14400", alias="DELIVERY_RETRY_SCHEDULE"
    )
    message_lifetime_seconds: int = Field(default=3 * 24 * 3600, alias="MESSAGE_LIFETIME_SECONDS")
    public_url: str = Field(default="http://127.0.0.1:8000", alias="PUBLIC_URL")
    mail_hostname: str = Field(default="sendstream.localhost", alias="MAIL_HOSTNAME")
    api_rate_limit: str = Field(default="3000/second", alias="API_RATE_LIMIT")
    send_rate_limit: str = Field(default="3000/second", alias="SEND_RATE_LIMIT")
    # Sends in progress at most in a process (the API's and SMTP submission's): one more is
    # refused with 503 and Retry-After (engine/admission.py). 0: accept all, however slowly.
    max_sends_in_progress: int = Field(default=32, ge=0, le=100_000, alias="MAX_SENDS_IN_PROGRESS")
    max_request_bytes: int = Field(default=10 * 1024 * 1024, alias="MAX_REQUEST_BYTES")
    max_recipients: int = Field(default=50, alias="MAX_RECIPIENTS")
    max_reply_to: int = Field(default=5, alias="MAX_REPLY_TO")
    bounce_smtp_ports: str = Field(default="2526", alias="BOUNCE_SMTP_PORTS")
    # Where customers' MX records point for their inbound routes (25 in production).
    inbound_smtp_ports: str = Field(default="2527", alias="INBOUND_SMTP_PORTS")
    log_format: Literal["text", "json"] = Field(default="text", alias="LOG_FORMAT")
    # Where a process without the API role answers GET /metrics (empty: nowhere; `serve`'s
    # own children are counted by its API process).
    metrics_port_text: str = Field(default="", alias="METRICS_PORT")

    @field_validator("metrics_port_text")
    @classmethod
    def _a_port(cls, value: str) -> str:
        if value.strip() and not (value.strip().isdigit() and 0 < int(value) < 65536):
            raise ValueError("METRICS_PORT must be a port number (1-65535) or empty")
        return value.strip()

    inbound_max_bytes: int = Field(default=10_000_000, alias="INBOUND_MAX_BYTES")
    inbound_max_recipients: int = Field(default=50, alias="INBOUND_MAX_RECIPIENTS")
    soft_bounce_limit: int = Field(default=3, alias="SOFT_BOUNCE_LIMIT")
    soft_bounce_window_days: int = Field(default=7, alias="SOFT_BOUNCE_WINDOW_DAYS")
    trust_forwarded_for: bool = Field(default=False, alias="TRUST_FORWARDED_FOR")
    session_lifetime_seconds: int = Field(default=3600, alias="SESSION_LIFETIME_SECONDS")
    # Failed logins allowed per username before it is locked out for a while (GCRA: after
    # ten quick failures, one more try per six minutes). Per API process.
    login_failure_limit: str = Field(default="10/hour", alias="LOGIN_FAILURE_LIMIT")
    dns_resolver: str = Field(default="", alias="DNS_RESOLVER")
    smtp_submission_host: str = Field(default="127.0.0.1", alias="SMTP_SUBMISSION_HOST")
    smtp_submission_ports: str = Field(default="2525,5870", alias="SMTP_SUBMISSION_PORTS")
    smtp_submission_tls_ports: str = Field(default="", alias="SMTP_SUBMISSION_TLS_PORTS")
    smtp_tls_cert: str = Field(default="", alias="SMTP_TLS_CERT")
    smtp_tls_key: str = Field(default="", alias="SMTP_TLS_KEY")
    smtp_max_message_bytes: int = Field(default=10 * 1024 * 1024, alias="SMTP_MAX_MESSAGE_BYTES")
    smtp_submission_rate_limit: str = Field(
        default="100/second", alias="SMTP_SUBMISSION_RATE_LIMIT"
    )

    webhook_allow_http: bool = Field(default=False, alias="WEBHOOK_ALLOW_HTTP")
    webhook_allow_loopback: bool = Field(default=False, alias="WEBHOOK_ALLOW_LOOPBACK")
    webhook_allow_private: bool = Field(default=False, alias="WEBHOOK_ALLOW_PRIVATE")
    webhook_concurrency: int = Field(default=512, ge=1, alias="WEBHOOK_CONCURRENCY")
    webhook_per_endpoint: int = Field(default=32, ge=1, alias="WEBHOOK_PER_ENDPOINT")
    webhook_processes: int = Field(default=2, ge=1, le=64, alias="WEBHOOK_PROCESSES")
    # `serve` runs this many delivery processes, each delivering its share of the messages.
    delivery_processes: int = Field(default=1, ge=1, le=64, alias="DELIVERY_PROCESSES")
    # Which share this process delivers, "K/N" (set by `serve` for its children); "" all.
    delivery_share: str = Field(default="", alias="DELIVERY_SHARE")
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, alias="WEBHOOK_TIMEOUT_SECONDS")
    webhook_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, alias="WEBHOOK_CONNECT_TIMEOUT_SECONDS"
    )

    webhook_retry_schedule: str = Field(
        default="5,30,120,600,1800,3600", alias="WEBHOOK_RETRY_SCHEDULE"
    )
    webhook_disable_after: int = Field(default=1000, ge=1, alias="WEBHOOK_DISABLE_AFTER")

    @model_validator(mode="after")
    def _cluster_has_a_server(self) -> Settings:
        if self.clickhouse_cluster and not self.clickhouse_url:
            raise ValueError("CLICKHOUSE_CLUSTER needs CLICKHOUSE_URL (chdb is one process)")
        return self

    @model_validator(mode="after")
    def _relay_has_a_url(self) -> Settings:
        if self.delivery_mode == "relay" and not self.smtp_relay_url:
            raise ValueError("DELIVERY_MODE=relay needs SMTP_RELAY_URL")
        return self

    @model_validator(mode="after")
    def _sending_addresses_are_ours(self) -> Settings:
        self.sources()  # a bad or foreign address stops start-up
        return self

    @property
    def reporting_topology(self) -> Topology:
        return Topology(self.clickhouse_cluster)

    def sources(self) -> tuple[SourceAddress, ...]:
        """``SENDING_ADDRESSES``, each checked to be an address of this machine."""
        try:
            sources = parse_sources(self.sending_addresses)
        except ValueError as error:
            raise ValueError(f"SENDING_ADDRESSES: {error}") from None
        for source in sources:
            if not is_local_address(source.address):
                raise ValueError(
                    f"SENDING_ADDRESSES: {source.address} is not an address of this "
                    f"machine: {INVALID_IP_ADDRESS}"
                )
        return sources

    @model_validator(mode="after")
    def _shaping_file_is_usable(self) -> Settings:
        if self.delivery_mode == "direct" or self.shaping_file:
            self.shaping_rules()  # a bad file stops start-up, with its line and the reason
        return self

    def shaping_rules(self) -> ShapingRules:
        """The traffic-shaping rules of ``SHAPING_FILE`` (or the ones that ship)."""
        if self.shaping_file:
            where, text = self.shaping_file, _read(Path(self.shaping_file))
        else:
            shipped = resources.files("engine.delivery").joinpath("shaping.toml")
            where, text = str(shipped), shipped.read_text(encoding="utf-8")
        try:
            return parse_shaping(text)
        except ShapingFileError as error:
            raise ValueError(f"SHAPING_FILE {where}: {error}") from None

    @field_validator("delivery_share")
    @classmethod
    def _share_is_k_of_n(cls, value: str) -> str:
        if value:
            DeliveryShare.parse(value)
        return value

    @property
    def share(self) -> DeliveryShare | None:
        """This process's share of the messages to deliver; None: all of them."""
        return DeliveryShare.parse(self.delivery_share) if self.delivery_share else None

    def as_env(self) -> dict[str, str]:
        """These settings as the environment variables they are read from (for a child process)."""
        return {
            str(field.alias): str(getattr(self, name))
            for name, field in type(self).model_fields.items()
            if field.alias
        }

    @property
    def postgres_schema(self) -> str:
        """``?schema=name`` on a PostgreSQL EVENTSTORE_URL keeps installations apart."""
        query = dict(parse_qsl(urlsplit(self.eventstore_url).query))
        return query.get("schema", "public")

    def postgres_conninfo(self) -> str:
        parts = urlsplit(self.eventstore_url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))

    @property
    def retry_schedule(self) -> list[timedelta]:
        return [timedelta(seconds=int(s)) for s in self.delivery_retry_schedule.split(",") if s]

    @property
    def webhook_retry_delays(self) -> tuple[float, ...]:
        return tuple(float(s) for s in self.webhook_retry_schedule.split(",") if s.strip())

    @property
    def message_lifetime(self) -> timedelta:
        return timedelta(seconds=self.message_lifetime_seconds)

    @property
    def outbound(self) -> str:
        """How mail leaves: ``sandbox``, ``relay`` or ``direct`` (``DELIVERY_MODE`` resolved)."""
        if self.delivery_mode:
            return self.delivery_mode
        return "relay" if self.smtp_relay_url else "sandbox"

    @property
    def uses_kafka(self) -> bool:
        return bool(self.kafka_bootstrap_servers)

    @property
    def submission_ports(self) -> list[int]:
        return [int(p) for p in self.smtp_submission_ports.split(",") if p.strip()]

    @property
    def bounce_ports(self) -> list[int]:
        return [int(p) for p in self.bounce_smtp_ports.split(",") if p.strip()]

    @property
    def metrics_port(self) -> int | None:
        return int(self.metrics_port_text) if self.metrics_port_text.strip() else None

    @property
    def inbound_ports(self) -> list[int]:
        return [int(p) for p in self.inbound_smtp_ports.split(",") if p.strip()]

    @property
    def submission_tls_ports(self) -> list[int]:
        return [int(p) for p in self.smtp_submission_tls_ports.split(",") if p.strip()]

    @property
    def spf_include(self) -> str:
        """What a sender domain's SPF record must include to authorise our servers."""
        return f"_spf.{self.mail_hostname}"

    @property
    def chdb_path(self) -> Path:
        return self.data_dir / "chdb"

    def eventstore_env(self) -> dict[str, str]:
        """The ``eventsourcing`` environment for the chosen event store."""
        url = self.eventstore_url or f"sqlite:///{self.data_dir / 'events.sqlite'}"
        parts = urlsplit(url)
        if parts.scheme == "sqlite":
            # sqlite:///var/events.sqlite is relative, sqlite:////srv/events.sqlite absolute.
            path = url.removeprefix("sqlite:///")
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            return {
                "PERSISTENCE_MODULE": "adapters.event_store:TunedSQLiteFactory",
                "SQLITE_DBNAME": path,
                "SQLITE_LOCK_TIMEOUT": "30",
                "SQLITE_SYNCHRONOUS": self.sqlite_synchronous,
                "TRANSCODER_TOPIC": TRANSCODER,
                "MAPPER_TOPIC": MAPPER,
            }
        if parts.scheme in ("postgresql", "postgres"):
            return {
                "PERSISTENCE_MODULE": "adapters.event_store:SerialisedPostgresFactory",
                "POSTGRES_DBNAME": parts.path.lstrip("/") or "sendstream",
                "POSTGRES_HOST": parts.hostname or "127.0.0.1",
                "POSTGRES_PORT": str(parts.port or 5432),
                "POSTGRES_USER": unquote(parts.username or "postgres"),
                "POSTGRES_PASSWORD": unquote(parts.password or ""),
                "POSTGRES_POOL_SIZE": "10",
                "POSTGRES_MAX_OVERFLOW": "10",
                "POSTGRES_CONNECT_TIMEOUT": str(self.eventstore_wait_seconds),
                # A pooled connection is checked before use: after a database restart
                # every one of them is dead, and each would fail a request otherwise.
                "POSTGRES_PRE_PING": "y",
                # Inserts under the table lock, so events are numbered in commit order: every
                # reader of the log relies on it (never the database function, which takes none).
                "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
                "POSTGRES_SCHEMA": self.postgres_schema,
                "TRANSCODER_TOPIC": TRANSCODER,
                "MAPPER_TOPIC": MAPPER,
            }
        raise ValueError(f"EVENTSTORE_URL must be sqlite:///… or postgresql://…, not {url!r}")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"SHAPING_FILE {path}: cannot be read ({error})") from None
