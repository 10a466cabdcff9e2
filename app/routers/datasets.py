"""Dataset downloads: manifest, files (presigned redirect or ranged stream), single samples."""

from __future__ import annotations

import io
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.responses import FileResponse, RedirectResponse

from pdeforge.workers import keys, pipeline
from pdeforge.workers.dataset import read_sample
from pdeforge.workers.errors import JobNotFound, ObjectNotFound
from pdeforge.workers.remote import RangeFile, locate_sample

from ..deps import ServiceDep, StorageDep
from ..errors import DatasetNotReady

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


def _manifest(dataset_id: str, service) -> dict:
    if not keys.is_id(dataset_id):
        raise JobNotFound(f"no dataset {dataset_id!r} (dataset ids are 16 hex digits)")
    manifest = pipeline.storage_manifest(service.storage, dataset_id)
    if manifest is None:
        rec = service.get(dataset_id)  # 404 when unknown
        raise DatasetNotReady(f"dataset {dataset_id} is not complete yet (job status: {rec['status']})")
    return manifest


@router.get("/{dataset_id}")
def get_manifest(dataset_id: str, service: ServiceDep) -> dict:
    """The dataset's manifest: files with bytes and sha256, shapes, dtypes, counts, solver summary."""
    return _manifest(dataset_id, service)


@router.get("/{dataset_id}/files/{path:path}", responses={
    200: {"description": "the file (local storage; supports HTTP Range)"},
    307: {"description": "redirect to a presigned URL (S3 storage)"},
    404: {"description": "no such file in the dataset"}})
def get_file(dataset_id: str, path: str, service: ServiceDep, storage: StorageDep):
    """Download one file of the dataset (only paths listed in the manifest are served)."""
    manifest = _manifest(dataset_id, service)
    entry = next((f for f in manifest["files"] if f["path"] == path), None)
    if entry is None and path != "manifest.json":
        raise HTTPException(404, f"no file {path!r} in dataset {dataset_id}")
    key = keys.prefix(dataset_id) + path
    url = storage.presigned_url(key)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    local = storage.local_path(key)
    if local is None or not local.is_file():
        raise ObjectNotFound(f"{key} missing", key=key)
    media = "application/x-hdf5" if path.endswith(".h5") else "application/json"
    headers = {"ETag": f'"{entry["sha256"]}"'} if entry else {}
    return FileResponse(local, media_type=media, filename=path.rsplit("/", 1)[-1], headers=headers)


@router.get("/{dataset_id}/samples/{index}", responses={
    200: {"content": {"application/json": {}, "application/octet-stream": {}},
          "description": "x, y and the solver record of one sample (JSON, or .npy of y / x)"}})
def get_sample(
    dataset_id: str, index: int, service: ServiceDep, storage: StorageDep,
    format: Annotated[Literal["json", "npy"], Query(description="json, or npy (a structured array)")] = "json",
):
    """One sample by global index, read from its shard without downloading the shard."""
    manifest = _manifest(dataset_id, service)
    if not 0 <= index < manifest["samples"]:
        raise HTTPException(404, f"sample index {index} out of range; allowed: 0 <= index < {manifest['samples']}")
    found = locate_sample(storage, dataset_id, index)
    if found is None:
        raise HTTPException(404, f"sample {index} is not in dataset {dataset_id}")
    split, shard, key, position = found
    local = storage.local_path(key)
    source = local if local is not None else RangeFile(storage, key)
    sample = read_sample(source, position)
    if format == "npy":
        buf = io.BytesIO()
        np.save(buf, _structured(sample))
        return Response(buf.getvalue(), media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="sample_{index}.npy"'})
    y = sample["y"]
    return {"dataset_id": dataset_id, "index": sample["index"], "split": split, "shard": shard,
            "x": sample["x"].tolist(),
            "y": y.tolist() if not np.iscomplexobj(y) else {"real": y.real.tolist(), "imag": y.imag.tolist()},
            "solver": sample["solver"], "params": sample["params"]}


def _structured(sample: dict) -> np.ndarray:
    x, y = np.asarray(sample["x"]), np.asarray(sample["y"])
    dt = np.dtype([("x", x.dtype, x.shape), ("y", y.dtype, y.shape), ("index", np.int64),
                   ("residual", np.float64)])
    arr = np.zeros((), dtype=dt)
    arr["x"], arr["y"], arr["index"], arr["residual"] = x, y, sample["index"], sample["solver"]["residual"]
    return arr


@router.delete("/{dataset_id}", status_code=204)
def delete_dataset(dataset_id: str, service: ServiceDep) -> Response:
    """Delete a dataset's files and its job record (cancel a running job first)."""
    service.delete(dataset_id)
    return Response(status_code=204)
