"""Datasets: manifest (final, or the finished shards of a running job), files, single samples, previews."""

from __future__ import annotations

import io
import math
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, RedirectResponse

from pdeforge.workers import keys
from pdeforge.workers.dataset import read_sample
from pdeforge.workers.errors import DatasetNotReady, ObjectNotFound
from pdeforge.workers.remote import locate_sample, sample_indices, storage_file

from ..deps import ServiceDep, StorageDep
from ..schemas import SampleIndices

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

ResolutionQuery = Annotated[int | None, Query(ge=1, description="paired datasets: which resolution (cells per "
                                                                 "axis); the finest by default")]
NOT_READY = {409: {"description": "not finished yet (the dataset, or the shard holding the sample)"}}


@router.get("/{dataset_id}", responses=NOT_READY)
def get_manifest(dataset_id: str, service: ServiceDep) -> dict:
    """The manifest: files with bytes and sha256, shapes, dtypes, counts, claims, solver summary; while the
    job runs, the shards finished so far (``complete: false``; every listed shard is ``final``)."""
    return service.dataset_manifest(dataset_id)


@router.get("/{dataset_id}/files/{path:path}", responses={
    200: {"description": "the file (local storage; supports HTTP Range)"},
    307: {"description": "redirect to a presigned URL (S3 storage)"},
    404: {"description": "no such file in the dataset"}, **NOT_READY})
def get_file(dataset_id: str, path: str, service: ServiceDep, storage: StorageDep):
    """Download one file listed in the (final or partial) manifest; finished shards while the job runs."""
    manifest = service.dataset_manifest(dataset_id)
    entry = next((f for f in manifest["files"] if f["path"] == path), None)
    if path == "manifest.json" and not manifest["complete"]:
        raise DatasetNotReady(f"dataset {dataset_id} is not complete yet: manifest.json is written last "
                              f"({manifest['shards_final']}/{manifest['shards_total']} shards final)")
    if entry is None and path != "manifest.json":
        raise HTTPException(404, f"no file {path!r} in dataset {dataset_id}")
    key = keys.prefix(dataset_id) + path
    url = storage.presigned_url(key)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    local = storage.local_path(key)
    if local is None or not local.is_file():
        raise ObjectNotFound(f"{key} missing", key=key)
    media = {"h5": "application/x-hdf5", "md": "text/markdown"}.get(path.rsplit(".", 1)[-1], "application/json")
    headers = {"ETag": f'"{entry["sha256"]}"'} if entry else {}
    return FileResponse(local, media_type=media, filename=path.rsplit("/", 1)[-1], headers=headers)


def _read(dataset_id: str, index: int, service, storage, resolution: int | None = None) -> tuple[dict, str, int]:
    """(sample, split, shard) of global ``index``, read from its shard without downloading it (of a paired
    dataset: at ``resolution``, the finest by default)."""
    manifest = service.dataset_manifest(dataset_id)
    if not 0 <= index < manifest["samples"]:
        raise HTTPException(404, f"sample index {index} out of range; allowed: 0 <= index < {manifest['samples']}")
    resolutions = manifest.get("resolutions") or [manifest["grid"][0]]
    if resolution is not None and resolution not in resolutions:
        raise RequestValidationError([{"type": "value_error", "loc": ("query", "resolution"), "input": resolution,
                                       "msg": f"{resolution} cells per axis are not held by this dataset; "
                                              f"allowed: one of {resolutions}"}])
    found = locate_sample(storage, dataset_id, index)
    if found is None:
        raise HTTPException(404, f"sample {index} is not in dataset {dataset_id}")
    split, shard, key, position = found
    if manifest.get("resolutions") and resolution not in (None, manifest["grid"][0]):
        key = keys.shard(dataset_id, split, shard, resolution)
    if not any(f.get("shard") == shard and f.get("split") == split for f in manifest["files"]):
        raise DatasetNotReady(f"sample {index} is in shard {keys.shard_name(split, shard)}, which is not "
                              "finished yet")
    local = storage.local_path(key)
    return read_sample(local if local is not None else storage_file(storage, key), position), split, shard


SAMPLE_RESPONSES = {200: {"content": {"application/json": {}, "application/octet-stream": {}, "image/png": {}},
                          "description": "one sample: JSON, .npy (a structured array) or a PNG preview"},
                    **NOT_READY}


@router.get("/{dataset_id}/samples", response_model=SampleIndices, responses=NOT_READY)
def list_samples(
    dataset_id: str, service: ServiceDep, storage: StorageDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    after: Annotated[int, Query(ge=-1, le=2**62, description="only indices above this one (the last index of "
                                                             "the previous page)")] = -1,
) -> SampleIndices:
    """Indices of the samples readable now: every sample of a finished dataset, those of finished shards before."""
    manifest = service.dataset_manifest(dataset_id)
    finished = {(f["split"], f["shard"]) for f in manifest["files"] if "shard" in f}
    indices = sample_indices(storage, dataset_id, finished)
    start = int(np.searchsorted(indices, after, side="right"))
    return SampleIndices(dataset_id=dataset_id, complete=manifest["complete"], available=len(indices),
                         indices=indices[start:start + limit].tolist())


@router.get("/{dataset_id}/samples/{index}.png", response_class=Response, responses={
    200: {"content": {"image/png": {}}, "description": "input channels and solution, with colour bars"},
    **NOT_READY})
def get_sample_png(dataset_id: str, index: int, service: ServiceDep, storage: StorageDep,
                   resolution: ResolutionQuery = None) -> Response:
    """A PNG preview of one sample: every input channel and the solution side by side."""
    return _png(dataset_id, index, service, storage, resolution)


@router.get("/{dataset_id}/samples/{index}", responses=SAMPLE_RESPONSES)
def get_sample(
    dataset_id: str, index: int, service: ServiceDep, storage: StorageDep,
    format: Annotated[Literal["json", "npy", "png"],
                      Query(description="json, npy (a structured array) or png (a preview image)")] = "json",
    resolution: ResolutionQuery = None,
):
    """One sample by global index: inputs, solution, scalars, extra inputs and solver record."""
    if format == "png":
        return _png(dataset_id, index, service, storage, resolution)
    sample, split, shard = _read(dataset_id, index, service, storage, resolution)
    if format == "npy":
        buf = io.BytesIO()
        np.save(buf, _structured(sample))
        return Response(buf.getvalue(), media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="sample_{index}.npy"'})
    return {"dataset_id": dataset_id, "index": sample["index"], "split": split, "shard": shard,
            "input_channels": sample["input_channels"], "output_channels": sample["output_channels"],
            "x": sample["x"].tolist(), "y": _json_array(sample["y"]), "scalars": sample["scalars"],
            "inputs": {k: v.tolist() for k, v in sample["inputs"].items()},
            "solver": {k: _finite_or_none(v) for k, v in sample["solver"].items()}}


def _finite_or_none(value):
    """A solver field as JSON: NaN (a field that does not apply, e.g. the time error of a steady sample)
    becomes null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _png(dataset_id: str, index: int, service, storage, resolution: int | None = None) -> Response:
    from pdeforge.workers.preview import render_png

    sample, split, shard = _read(dataset_id, index, service, storage, resolution)
    png = render_png(sample, title=f"{dataset_id} sample {index} ({split})")
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


def _json_array(y: np.ndarray):
    return y.tolist() if not np.iscomplexobj(y) else {"real": y.real.tolist(), "imag": y.imag.tolist()}


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
