"""Storage conformance suite (local folder and SeaweedFS S3) plus S3-specific checks.

Every test taking ``storage`` runs against both backends. S3 tests talk to the real
SeaweedFS server of the ``s3_server`` fixture; the error-mapping unit tests at the end
use botocore's Stubber and hand-made exceptions only.
"""

from __future__ import annotations

import io
import os
import pickle
import random
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import timezone
from pathlib import Path

import boto3.exceptions
import botocore.exceptions as bce
import pytest
from botocore.stub import Stubber

from pdeforge.workers.errors import (
    InvalidKey, ObjectNotFound, StorageError, TransientStorageError, WorkerError,
)
from pdeforge.workers.storage import LocalStorage, S3Storage, Storage, canonical_json, open_storage
from pdeforge.workers.storage.base import TMP_MARKER
from pdeforge.workers.storage.s3 import MiB, translate_error

SHARD = "datasets/7/data/train/shard_00000.h5"


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


class FailingReader(io.RawIOBase):
    """A non-seekable stream that yields ``fail_after`` bytes, then raises."""

    class Broke(RuntimeError):
        pass

    def __init__(self, fail_after: int) -> None:
        self.remaining = fail_after

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.remaining <= 0:
            raise self.Broke("source failed mid-way")
        n = min(len(buffer), self.remaining)
        buffer[:n] = b"x" * n
        self.remaining -= n
        return n


def no_proxy_get(url: str) -> bytes:
    """Plain HTTP GET ignoring any *_proxy environment variables."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return response.read()


def http_status(url: str) -> int:
    try:
        no_proxy_get(url)
    except urllib.error.HTTPError as exc:
        return exc.code
    return 200


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def leftover_temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TMP_MARKER)]


# -- conformance: both backends -----------------------------------------------------


def test_backend_implements_protocol(storage):
    assert isinstance(storage, Storage)
    assert storage.url.startswith(("file:///", "s3://"))
    storage.check()


def test_bytes_round_trip_and_overwrite(storage):
    storage.put_bytes(SHARD, b"first version")
    assert storage.get_bytes(SHARD) == b"first version"
    assert storage.exists(SHARD)
    info = storage.stat(SHARD)
    assert (info.key, info.size) == (SHARD, 13)
    assert info.modified.tzinfo is not None and info.modified.utcoffset().total_seconds() == 0
    assert abs(time.time() - info.modified.timestamp()) < 120

    storage.put_bytes(SHARD, b"v2")
    assert storage.get_bytes(SHARD) == b"v2"
    assert storage.stat(SHARD).size == 2


def test_empty_object(storage):
    storage.put_bytes("empty", b"")
    assert storage.get_bytes("empty") == b""
    assert storage.stat("empty").size == 0
    assert storage.get_range("empty", 0, 10) == b""


def test_file_round_trip(storage, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(payload(100_000))
    storage.put_file("datasets/1/file.bin", src)
    dest_dir = tmp_path / "out"
    dest_dir.mkdir()
    storage.download_file("datasets/1/file.bin", dest_dir / "copy.bin")
    assert (dest_dir / "copy.bin").read_bytes() == src.read_bytes()
    assert [p.name for p in dest_dir.iterdir()] == ["copy.bin"]  # no temp files left


def test_fileobj_round_trip(storage):
    storage.put_fileobj("stream.bin", io.BytesIO(b"streamed"))
    assert storage.get_bytes("stream.bin") == b"streamed"


def test_json_is_canonical(storage):
    manifest = {"shards": [{"n": 3, "key": "a.h5"}], "b": 1.5, "a": "é"}
    storage.put_json("datasets/1/manifest.json", manifest)
    assert storage.get_json("datasets/1/manifest.json") == manifest
    raw = storage.get_bytes("datasets/1/manifest.json")
    assert raw == '{"a":"é","b":1.5,"shards":[{"key":"a.h5","n":3}]}'.encode()
    assert raw == canonical_json(manifest)
    with pytest.raises(ValueError):
        storage.put_json("bad.json", {"x": float("nan")})


def test_large_file_goes_multipart(storage, tmp_path):
    data = payload(20 * MiB, seed=1)
    src = tmp_path / "big.h5"
    src.write_bytes(data)
    storage.put_file(SHARD, src)
    info = storage.stat(SHARD)
    assert info.size == len(data)
    if isinstance(storage, S3Storage):
        # A multipart ETag is md5-of-part-md5s plus "-<parts>": 20 MiB in 8 MiB parts.
        assert info.etag.endswith("-3"), info.etag
    boundary = 8 * MiB
    assert storage.get_range(SHARD, boundary - 5, boundary + 4) == data[boundary - 5:boundary + 5]
    storage.download_file(SHARD, tmp_path / "back.h5")
    assert (tmp_path / "back.h5").read_bytes() == data
    assert storage.get_bytes(SHARD) == data


def test_ranges(storage):
    data = bytes(range(256)) * 4
    storage.put_bytes("r.bin", data)
    assert storage.get_range("r.bin", 0, 0) == data[:1]
    assert storage.get_range("r.bin", 10, 20) == data[10:21]
    assert storage.get_range("r.bin", 1000, 5000) == data[1000:]  # clipped to the end
    assert storage.get_range("r.bin", 1024, 2000) == b""  # entirely past the end
    for start, end in [(-1, 3), (5, 4)]:
        with pytest.raises(ValueError):
            storage.get_range("r.bin", start, end)
    with pytest.raises(ObjectNotFound):
        storage.get_range("missing.bin", 0, 10)


def test_list_is_recursive_sorted_and_folder_scoped(storage):
    keys = ["a/b.txt", "a/b/c", "a/b0", "a/c/d/e.h5", "ab/x", "z", "a/B"]
    for i, key in enumerate(random.Random(2).sample(keys, len(keys))):
        storage.put_bytes(key, b"x" * (i + 1))
    listed = list(storage.list())
    assert [o.key for o in listed] == sorted(keys)
    assert all(o.size == storage.stat(o.key).size for o in listed)
    under_a = ["a/B", "a/b.txt", "a/b/c", "a/b0", "a/c/d/e.h5"]
    assert [o.key for o in storage.list("a")] == under_a  # not "ab/x"
    assert [o.key for o in storage.list("a/")] == under_a
    assert [o.key for o in storage.list("a/c")] == ["a/c/d/e.h5"]
    assert list(storage.list("nothing/here")) == []
    assert list(storage.list("z")) == []  # an object is not a folder


def test_missing_objects(storage, tmp_path):
    storage.put_bytes("dir/obj", b"1")
    for call in (lambda: storage.get_bytes("nope"), lambda: storage.stat("nope"),
                 lambda: storage.download_file("nope", tmp_path / "x"),
                 lambda: storage.stat("dir"), lambda: storage.get_bytes("dir/obj/deeper")):
        with pytest.raises(ObjectNotFound) as info:
            call()
        assert isinstance(info.value, KeyError) and isinstance(info.value, StorageError)
        assert info.value.backend == storage.url
    assert not storage.exists("nope")
    assert not storage.exists("dir")  # folders are not objects
    assert not (tmp_path / "x").exists()
    with pytest.raises(ObjectNotFound, match="no such object") as info:
        storage.get_bytes("datasets/9/manifest.json")
    assert info.value.key == "datasets/9/manifest.json"


def test_delete_and_delete_prefix(storage):
    for key in ["d/1", "d/sub/2", "d/sub/deep/3", "dx/keep", "other"]:
        storage.put_bytes(key, b"x")
    storage.delete("other")
    storage.delete("other")  # idempotent
    assert not storage.exists("other")
    assert storage.delete_prefix("d") == 3
    assert [o.key for o in storage.list()] == ["dx/keep"]
    assert storage.delete_prefix("d/") == 0
    with pytest.raises(InvalidKey):
        storage.delete_prefix("")


BAD_KEYS = ["../x", "a/../../x", "/abs", "a//b", "a\\b", "", "a\x00b", "a/./b", ".", "a/",
            "x\n", f"a/{TMP_MARKER}123", "k" * 1025]


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_invalid_keys(storage, key):
    calls = {
        "put_bytes": lambda: storage.put_bytes(key, b"x"),
        "put_json": lambda: storage.put_json(key, {}),
        "get_bytes": lambda: storage.get_bytes(key),
        "get_range": lambda: storage.get_range(key, 0, 1),
        "stat": lambda: storage.stat(key),
        "exists": lambda: storage.exists(key),
        "delete": lambda: storage.delete(key),
        "presigned_url": lambda: storage.presigned_url(key),
        "local_path": lambda: storage.local_path(key),
    }
    if key not in ("", "a/"):  # "" lists everything; "a/" is a valid folder prefix
        calls["list"] = lambda: storage.list(key)
        calls["delete_prefix"] = lambda: storage.delete_prefix(key)
    for name, call in calls.items():
        with pytest.raises(InvalidKey) as info:
            call()
        assert isinstance(info.value, ValueError), name
    assert list(storage.list()) == []


def test_failed_overwrite_keeps_old_content(storage):
    storage.put_bytes(SHARD, b"old content")
    # 12 MiB before failing: past the 8 MiB threshold, so S3 has begun a multipart upload.
    with pytest.raises(FailingReader.Broke):
        storage.put_fileobj(SHARD, FailingReader(12 * MiB))
    assert storage.get_bytes(SHARD) == b"old content"
    assert [o.key for o in storage.list()] == [SHARD]
    if isinstance(storage, LocalStorage):
        assert leftover_temp_files(storage.root) == []
    else:  # the transfer manager aborted the multipart upload
        uploads = storage.client.list_multipart_uploads(Bucket=storage.bucket, Prefix=storage.prefix)
        assert uploads.get("Uploads", []) == []


def test_readers_never_see_partial_objects(storage):
    size = 1 * MiB
    versions = [bytes([c]) * size for c in b"ab"]
    storage.put_bytes("hot.bin", versions[0])
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer():
        try:
            for i in range(12):
                storage.put_bytes("hot.bin", versions[i % 2])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            stop.set()

    thread = threading.Thread(target=writer)
    thread.start()
    reads = 0
    while not stop.is_set() or reads < 3:
        data = storage.get_bytes("hot.bin")
        assert data in versions, f"partial read of {len(data)} bytes"
        reads += 1
    thread.join()
    assert not errors
    if isinstance(storage, LocalStorage):
        assert leftover_temp_files(storage.root) == []


def test_presigned_and_local_path_by_backend(storage):
    storage.put_bytes("p/obj.txt", b"payload")
    if isinstance(storage, LocalStorage):
        assert storage.presigned_url("p/obj.txt") is None
        path = storage.local_path("p/obj.txt")
        assert path.read_bytes() == b"payload" and path.is_relative_to(storage.root)
        with pytest.raises(ObjectNotFound):
            storage.local_path("p/missing.txt")
    else:
        assert storage.local_path("p/obj.txt") is None
        assert no_proxy_get(storage.presigned_url("p/obj.txt")) == b"payload"


# -- local backend specifics --------------------------------------------------------


def test_local_rejects_symlink_escapes(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    store = LocalStorage(tmp_path / "root")
    (store.root / "link").symlink_to(outside, target_is_directory=True)
    (store.root / "filelink").symlink_to(outside / "secret")
    for key in ["link/secret", "link/new", "filelink"]:
        with pytest.raises(InvalidKey, match="outside"):
            store.get_bytes(key)
        with pytest.raises(InvalidKey):
            store.put_bytes(key, b"overwrite")
    assert (outside / "secret").read_bytes() == b"secret"
    assert not (outside / "new").exists()
    assert list(store.list()) == []


def test_local_write_conflicts_are_storage_errors(tmp_path):
    store = LocalStorage(tmp_path / "root")
    store.put_bytes("a/b", b"file")
    with pytest.raises(StorageError) as info:
        store.put_bytes("a/b/c", b"needs a/b to be a folder")
    assert not isinstance(info.value, ObjectNotFound)
    store.delete("a/b")
    assert list(store.root.iterdir()) == []  # empty folders pruned


def test_open_storage_urls(tmp_path):
    local = open_storage((tmp_path / "a b").as_uri())
    assert isinstance(local, LocalStorage) and local.root == (tmp_path / "a b").resolve()
    assert open_storage(local.url).root == local.root
    s3 = open_storage("s3://bucket/some/prefix/", endpoint_url="http://127.0.0.1:1")
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.prefix, s3.url) == ("bucket", "some/prefix/", "s3://bucket/some/prefix")
    assert open_storage("s3://bucket").url == "s3://bucket"
    for url in ["file://relative/path", "file:relative", "ftp://x/y", "s3:///nobucket",
                "s3://b/../etc", "s3://user@b/x", "/plain/path"]:
        with pytest.raises(ValueError):
            open_storage(url)
    with pytest.raises(ValueError, match="file, s3"):
        open_storage("gs://bucket")


# -- S3 specifics against SeaweedFS -------------------------------------------------


@pytest.fixture
def s3_storage(s3_server):
    prefix = f"test-{uuid.uuid4().hex}"
    yield open_storage(f"s3://{s3_server.bucket}/{prefix}", **s3_server.storage_options())
    open_storage(f"s3://{s3_server.bucket}", **s3_server.storage_options()).delete_prefix(prefix)


def test_presigned_url_expires(s3_storage):
    s3_storage.put_bytes("x.txt", b"short-lived")
    url = s3_storage.presigned_url("x.txt", expires=1)
    assert "X-Amz-Expires=1" in url
    time.sleep(2.5)  # SigV4 timestamps have 1 s resolution
    assert http_status(url) == 403


def test_presigned_url_with_tampered_signature_is_refused(s3_storage):
    s3_storage.put_bytes("x.txt", b"secret")
    url = s3_storage.presigned_url("x.txt", expires=60)
    assert no_proxy_get(url) == b"secret"
    marker = "X-Amz-Signature="
    i = url.index(marker) + len(marker)
    tampered = url[:i] + ("0" if url[i] != "0" else "1") + url[i + 1:]
    assert http_status(tampered) == 403
    # An unsigned request for the same object is refused too.
    assert http_status(f"{s3_storage.endpoint_url}/{s3_storage.bucket}/{s3_storage.prefix}x.txt") == 403


def test_wrong_credentials_are_a_permanent_storage_error(s3_server, s3_storage):
    s3_storage.put_bytes("x.txt", b"1")
    options = dict(s3_server.storage_options(), secret_key="not-the-secret")
    wrong = open_storage(s3_storage.url, **options)
    for call in (wrong.check, lambda: wrong.get_bytes("x.txt"), lambda: wrong.put_bytes("y", b"1")):
        with pytest.raises(StorageError) as info:
            call()
        assert not isinstance(info.value, (TransientStorageError, ObjectNotFound))
    assert not s3_storage.exists("y")


def test_missing_bucket_fails_check(s3_server):
    with pytest.raises(StorageError, match="does not exist") as info:
        open_storage("s3://no-such-bucket-here", **s3_server.storage_options()).check()
    assert not isinstance(info.value, (TransientStorageError, ObjectNotFound))


def test_unreachable_endpoint_is_transient_and_fast():
    store = open_storage("s3://bucket/p", endpoint_url=f"http://127.0.0.1:{closed_port()}",
                         access_key="k", secret_key="s", max_attempts=1, connect_timeout=1)
    t0 = time.monotonic()
    for call in (store.check, lambda: store.get_bytes("x"), lambda: store.put_bytes("x", b"1")):
        with pytest.raises(TransientStorageError, match="unreachable") as info:
            call()
        assert isinstance(info.value.__cause__, bce.EndpointConnectionError)
    assert time.monotonic() - t0 < 5


# -- error mapping unit tests (no server) -------------------------------------------


def client_error(code: str, status: int, op: str = "GetObject") -> bce.ClientError:
    return bce.ClientError({"Error": {"Code": code, "Message": f"{code}!"},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, op)


@pytest.mark.parametrize(("code", "status", "expected"), [
    ("NoSuchKey", 404, ObjectNotFound),
    ("404", 404, ObjectNotFound),  # HEAD responses carry no body, hence no real code
    ("NoSuchBucket", 404, StorageError),
    ("AccessDenied", 403, StorageError),
    ("SignatureDoesNotMatch", 403, StorageError),
    ("SlowDown", 503, TransientStorageError),
    ("InternalError", 500, TransientStorageError),
    ("TooManyRequests", 429, TransientStorageError),
    ("RequestTimeout", 400, TransientStorageError),
])
def test_client_error_mapping(code, status, expected):
    error = translate_error(client_error(code, status), key="k", backend="s3://b")
    assert type(error) is expected
    assert (error.key, error.backend, error.code) == ("k", "s3://b", code)


def test_wrapped_and_non_s3_errors():
    try:  # boto3's upload_file keeps the ClientError only as __context__
        try:
            raise client_error("SlowDown", 503, "UploadPart")
        except bce.ClientError:
            raise boto3.exceptions.S3UploadFailedError("Failed to upload") from None
    except boto3.exceptions.S3UploadFailedError as exc:
        wrapped = exc
    assert wrapped.__context__ is not None
    assert isinstance(translate_error(wrapped), TransientStorageError)
    assert isinstance(translate_error(bce.ReadTimeoutError(endpoint_url="http://x")),
                      TransientStorageError)
    assert type(translate_error(bce.NoCredentialsError())) is StorageError
    assert translate_error(RuntimeError("not from S3")) is None


def test_stubbed_server_errors_reach_callers_mapped():
    store = open_storage("s3://bucket/pre", endpoint_url="http://127.0.0.1:1",
                         access_key="k", secret_key="s")
    with Stubber(store.client) as stub:
        stub.add_client_error("get_object", "SlowDown", http_status_code=503,
                              expected_params={"Bucket": "bucket", "Key": "pre/a"})
        stub.add_client_error("head_object", "404", http_status_code=404)
        stub.add_client_error("put_object", "AccessDenied", http_status_code=403)
        with pytest.raises(TransientStorageError):
            store.get_bytes("a")
        with pytest.raises(ObjectNotFound):
            store.stat("a")
        with pytest.raises(StorageError, match="AccessDenied|Access"):
            store.put_bytes("a", b"x")
        stub.assert_no_pending_responses()


def test_errors_carry_context_and_pickle():
    error = ObjectNotFound("no such object", key="datasets/1/x", backend="s3://b/p", code="NoSuchKey")
    assert str(error) == "no such object (key='datasets/1/x', backend='s3://b/p', code='NoSuchKey')"
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is ObjectNotFound and isinstance(clone, (WorkerError, KeyError))
    assert (clone.key, clone.backend, clone.code, str(clone)) == (
        error.key, error.backend, error.code, str(error))
    assert issubclass(InvalidKey, ValueError) and issubclass(TransientStorageError, StorageError)


def test_fork_gets_a_fresh_client(monkeypatch):
    store = open_storage("s3://bucket", endpoint_url="http://127.0.0.1:1",
                         access_key="k", secret_key="s")
    first = store.client
    assert store.client is first
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as seen from a forked Celery child
    assert store.client is not first


def test_modified_is_utc(storage):
    storage.put_bytes("t", b"1")
    assert storage.stat("t").modified.tzinfo == timezone.utc
