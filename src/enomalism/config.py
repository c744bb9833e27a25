"""Server settings, read from `ENOMALISM_*` environment variables and the `serve` options."""

from pathlib import Path

from pydantic import Field
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
    # argon2id cost for password hashes (argon2-cffi's defaults, RFC 9106 low-memory profile).
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'enomalism.db').resolve()}"
