"""Process-wide handles built from :class:`~pdeforge.workers.config.Settings`: storage, job store, factor cache."""

from __future__ import annotations

from functools import lru_cache

from pdeforge.solvers.engines import FactorCache

from .config import Settings, get_settings
from .state import JobStore
from .storage import Storage, open_storage


def make_storage(settings: Settings) -> Storage:
    return open_storage(
        settings.resolved_storage_url(),
        endpoint_url=settings.s3_endpoint_url,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        region=settings.s3_region,
        presign_expiry=settings.presign_expiry,
        public_endpoint_url=settings.s3_public_endpoint_url,
    )


def make_store(settings: Settings) -> JobStore:
    return JobStore.from_url(settings.require_state_url(), settings.key_prefix)


@lru_cache(maxsize=1)
def storage() -> Storage:
    return make_storage(get_settings())


@lru_cache(maxsize=1)
def store() -> JobStore:
    return make_store(get_settings())


@lru_cache(maxsize=1)
def factor_cache() -> FactorCache:
    """This worker process's factorizations of fixed operators (``factorize_once``), kept across shards."""
    return FactorCache()
