"""Fixtures for the dataset pipeline: a real Redis + Celery + SeaweedFS cluster.

The machinery (isolation by key prefix and queue, worker processes in their own process
groups, cleanup of only our own keys) lives in :mod:`tests.cluster`, shared with
tests/app.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.cluster import Cluster, connect_redis, make_cluster


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = connect_redis()
    yield client
    client.close()


@pytest.fixture(scope="module")
def cluster(redis_client, s3_server, tmp_path_factory) -> Iterator[Cluster]:
    """A cluster with one default-settings worker (``-c 2``), shared by a test module."""
    with make_cluster(redis_client, tmp_path_factory.mktemp("workers"), s3_server=s3_server) as c:
        c.start_worker(concurrency=2)
        yield c


@pytest.fixture
def new_cluster(redis_client, s3_server, tmp_path) -> Iterator[Cluster]:
    """A cluster of this test only, without workers (the test starts them with its settings)."""
    with make_cluster(redis_client, tmp_path, s3_server=s3_server) as c:
        yield c
