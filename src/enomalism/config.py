"""Server settings, read from `ENOMALISM_*` environment variables and the `serve` options."""

import os
import socket
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ENOMALISM_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("./var")
    database_url: str | None = None
    # Libvirt URIs added to the local host at start. Empty: detect qemu:///system.
    hypervisors: list[str] = Field(default_factory=list)
    admin_password: str | None = None
    # How long a verified credential is trusted without hashing it again.
    auth_cache_seconds: float = 60.0
    # Threads running transactions in this server process.
    job_threads: int = 2
    # -- several API nodes on one database (docs/deployment.md) --
    # This server's identity among the nodes; empty: kept in <data dir>/node-id.
    node_id: str | None = None
    # The machine this node runs on; nodes on one machine share its local hypervisors.
    machine_name: str = Field(default_factory=socket.gethostname)
    # Where packages are kept; with several nodes, a directory every node mounts (NFS...).
    packages_dir: Path | None = None
    # Seconds a node's claim on a hypervisor holds without renewal, and between renewals.
    owner_lease: float = 20.0
    owner_renew: float = 5.0
    # Seconds without a heartbeat after which another node takes over a running job.
    job_timeout: float = 120.0
    # Seconds between sweeps removing unused base volumes from the hypervisors (0: never; an
    # administrator can still prune: POST /rest/cache/prune/).
    cache_sweep_interval: float = 3600.0
    # Seconds between the samples of the machines' statistics (GET .../stats/ keeps an hour
    # of them; docs/api.md, "Metrics and stats").
    stats_interval: float = 10.0
    # -- the events stream (GET /rest/events/, docs/api.md) --
    # Events are kept this many seconds, and at most this many, for clients that reconnect.
    events_retention: float = 3600.0
    events_keep: int = 100_000
    # Seconds between reads of events other nodes wrote (this node's are read at once), and
    # between the heartbeats of an idle stream.
    events_poll: float = 0.25
    events_heartbeat: float = 15.0
    # -- consoles (docs/consoles.md) --
    # Seconds between the application-level pings a console WebSocket sends (proxies cut idle
    # connections; browsers cannot send WebSocket pings), and a console ticket's life (<= 30).
    console_ping: float = Field(default=20.0, gt=0)
    console_ticket_seconds: float = Field(default=30.0, gt=0, le=30)
    # argon2id cost for password hashes (argon2-cffi's defaults, RFC 9106 low-memory profile).
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    # -- what one request may cost (docs/access.md) --
    # Password verifications (argon2) running at once: on the server, and from one address
    # (IPv6: one /64); a login waits at most `login_wait_seconds` for its turn, then 429/503.
    login_slots: int = Field(default_factory=lambda: os.cpu_count() or 2)
    login_slots_per_address: int = 2
    login_wait_seconds: float = 1.0
    # Bytes of a request body, and of one variable (`xmldesc` may fill the body).
    max_body_bytes: int = 1 << 20
    max_field_bytes: int = 64 << 10
    # Origins (scheme://host[:port]) besides the server's own whose pages may send
    # state-changing requests from a browser (docs/access.md, "Browsers").
    trusted_origins: list[str] = Field(default_factory=list)

    # -- outbound fetches (feeds, packages; docs/deployment.md) --
    # Internal addresses fetches may reach all the same: comma-separated addresses, CIDR
    # networks or host names (e.g. a feed server on the LAN). Empty: the public internet only.
    fetch_allow: str = ""
    # Seconds a whole feed fetch may take, however slowly it trickles in.
    fetch_total_timeout: float = Field(default=60.0, gt=0)
    # The key that seals feed passwords in the database; the same file on every node.
    secret_key_file: Path | None = None

    @field_validator("fetch_allow")
    @classmethod
    def _check_fetch_allow(cls, value: str) -> str:
        from enomalism.feeds.download import parse_allow

        try:
            parse_allow(value)
        except ValueError as e:
            raise ValueError(f"ENOMALISM_FETCH_ALLOW: {e}") from None
        return value

    @property
    def secret_key_path(self) -> Path:
        return self.secret_key_file or self.data_dir / "secret.key"

    @property
    def packages_path(self) -> Path:
        return self.packages_dir or self.data_dir / "packages"

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'enomalism.db').resolve()}"
