"""Plan, solve-shard and finalize as plain functions over a :class:`~pdeforge.workers.storage.Storage`.

The Celery tasks (:mod:`pdeforge.workers.tasks`) and the in-process generator
(:mod:`pdeforge.workers.standalone`) call exactly these functions, so both write the same layout
(:mod:`pdeforge.workers.keys`).

* :func:`make_plan` -- deterministic split assignment, ordering features (no fields
  materialised), ordering per split, contiguous shards of at most ``shard_samples``.
* :func:`solve_shard` -- regenerate the shard's samples from (seed, index), solve them
  in the planned order, write one HDF5 shard and then its record (sha256, bytes,
  solver summary, statistics accumulators).  A shard whose record exists and whose
  object has the recorded size is not recomputed.
* :func:`finalize` -- check every shard against its record, per-field mean/std over
  the train split, solver summary, then ``manifest.json`` last.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from pdeforge.solvers import __version__
from pdeforge.solvers.engines import EngineDecision, FactorCache, pilot
from pdeforge.solvers.families import get_family
from pdeforge.solvers.generate import generate
from pdeforge.solvers.ordering import order_samples

from . import keys
from .dataset import sha256_file, write_shard
from .errors import JobCancelled, ObjectNotFound, StorageError
from .records import Plan, ShardPlan, ShardRecord
from .spec import JobBase, parse_spec
from .storage import Storage, canonical_json


# ----------------------------------------------------------------------------- spec & plan
def write_spec(storage: Storage, job: JobBase) -> None:
    if not storage.exists(keys.spec(job.dataset_id)):
        storage.put_json(keys.spec(job.dataset_id), job.model_dump(mode="json"))


def read_spec(storage: Storage, dataset_id: str) -> JobBase:
    return parse_spec(storage.get_json(keys.spec(dataset_id)))


def split_indices(job: JobBase) -> dict[str, np.ndarray]:
    """Deterministic split of range(samples): a seeded permutation cut by the fractions."""
    N = job.samples
    fractions = [job.split.train, job.split.valid, job.split.test]
    counts = [int(math.floor(f * N)) for f in fractions]
    remainders = sorted(range(3), key=lambda i: -(fractions[i] * N - counts[i]))
    for i in remainders[: N - sum(counts)]:
        counts[i] += 1
    perm = np.random.default_rng([job.seed, 0x5EED5]).permutation(N)
    out, start = {}, 0
    for name, count in zip(keys.SPLITS, counts):
        out[name] = np.sort(perm[start : start + count])
        start += count
    return out


def make_plan(job: JobBase) -> Plan:
    """The plan: for each split the ordered sample indices cut into contiguous shards."""
    t0 = time.perf_counter()
    family, spec = get_family(job.family), job.family_spec()
    ordered, orderings = {}, {}
    for name, idx in split_indices(job).items():
        t1 = time.perf_counter()
        ordered[name], used = order_samples(family, spec, job.seed, idx, job.solver.ordering)
        orderings[name] = {"method": used, "seconds": round(time.perf_counter() - t1, 4)}
    first = next((ordered[name] for name in keys.SPLITS if len(ordered[name])), np.zeros(0, np.int64))
    engine = choose_job_engine(job, first[: job.output.shard_samples])
    splits = {}
    for name, idx in ordered.items():
        count = max(1, math.ceil(len(idx) / job.output.shard_samples)) if len(idx) else 0
        splits[name] = [ShardPlan(name, k, keys.shard(job.dataset_id, name, k), part.tolist(), engine.chosen)
                        for k, part in enumerate(np.array_split(idx, count) if count else [])]
    return Plan(job.dataset_id, job.samples, splits, orderings, engine.as_dict(),
                round(time.perf_counter() - t0, 4), __version__)


def choose_job_engine(job: JobBase, first_indices) -> EngineDecision:
    """The engine for every shard: as requested, or (``auto``) decided by a pilot on the first
    samples of the first shard in solve order; the decision says which and why."""
    if job.solver.engine != "auto":
        return EngineDecision.fixed(job.solver.engine)
    return pilot(get_family(job.family), job.family_spec(), job.seed, list(first_indices), job.solver_options())


def read_plan(storage: Storage, dataset_id: str) -> Plan:
    return Plan.from_json(storage.get_json(keys.plan(dataset_id)))


def load_or_make_plan(storage: Storage, job: JobBase) -> Plan:
    """The stored plan if there is one (plans are deterministic), else a new one, stored."""
    try:
        return read_plan(storage, job.dataset_id)
    except ObjectNotFound:
        plan = make_plan(job)
        storage.put_json(keys.plan(job.dataset_id), plan.to_json())
        return plan


# ----------------------------------------------------------------------------- shards
def existing_shard(storage: Storage, dataset_id: str, split: str, k: int) -> ShardRecord | None:
    """The shard's record if the shard is complete (record present, object of recorded size)."""
    try:
        record = ShardRecord.from_json(storage.get_json(keys.shard_record(dataset_id, split, k)))
        if storage.stat(record.key).size == record.bytes:
            return record
    except ObjectNotFound:
        pass
    return None


def _moments(arr: np.ndarray) -> list[float]:
    a = np.asarray(arr, dtype=np.float64)
    return [float(a.size), float(a.sum()), float((a * a).sum())]


def shard_statistics(result) -> dict:
    """Accumulators (count, sum, sum of squares) per input channel and for y."""
    stats = {name: _moments(result.x[:, c]) for c, name in enumerate(result.input_names)}
    if np.iscomplexobj(result.y):
        stats["y.real"], stats["y.imag"] = _moments(result.y.real), _moments(result.y.imag)
    else:
        stats["y"] = _moments(result.y)
    return stats


def solver_summary(records) -> dict:
    its = [r.iterations for r in records]
    return {
        "samples": len(records),
        "iterations_sum": int(sum(its)),
        "iterations_max": int(max(its, default=0)),
        "matvecs_sum": int(sum(r.matvecs for r in records)),
        "residual_max": float(max((r.residual for r in records), default=0.0)),
        "seconds_sum": float(sum(r.seconds for r in records)),
        "engines": dict(Counter(r.engine for r in records)),
        "fallbacks": int(sum(r.fallback for r in records)),
        "unconverged": int(sum(not r.converged for r in records)),
    }


def solve_shard(
    storage: Storage,
    job: JobBase,
    shard: ShardPlan,
    *,
    on_progress: Callable[[int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    cache: FactorCache | None = None,
) -> ShardRecord:
    """Solve one planned shard and store it; returns its record (idempotent, see module doc).

    ``on_progress(done)`` is called after every sample; ``should_cancel()`` is polled
    between samples and stops the shard with :class:`JobCancelled`; ``cache`` is the
    worker process's factor cache.
    """
    done = existing_shard(storage, job.dataset_id, shard.split, shard.shard)
    if done is not None:
        return done
    family, spec = get_family(job.family), job.family_spec()
    options = dataclasses.replace(job.solver_options(), ordering="none", engine=shard.engine)  # the plan ordered them
    count = 0

    def check_cancel() -> None:
        if should_cancel is not None and should_cancel():
            raise JobCancelled(f"job {job.dataset_id} cancelled", job_id=job.dataset_id)

    def on_sample(_record) -> None:
        nonlocal count
        count += 1
        if on_progress is not None:
            on_progress(count)
        check_cancel()

    check_cancel()
    t0 = time.perf_counter()
    result = generate(family, spec, shard.indices, seed=job.seed, options=options, on_sample=on_sample, cache=cache)
    seconds = time.perf_counter() - t0
    attrs = {"spec": job.canonical_json(), "dataset_id": job.dataset_id, "family": job.family,
             "grid": list(spec.shape), "split": shard.split, "shard": shard.shard}
    fd, tmp = tempfile.mkstemp(suffix=".h5", prefix="pdeforge-shard-")
    os.close(fd)
    try:
        info = write_shard(tmp, result, attrs=attrs, coordinates=family.coordinates(spec),
                           precision=job.output.dtype)
        record = ShardRecord(
            split=shard.split, shard=shard.shard, key=shard.key, bytes=os.path.getsize(tmp),
            sha256=sha256_file(tmp), samples=info["samples"], x=info["x"], y=info["y"],
            first_index=int(result.indices[0]) if len(result.indices) else None,
            solver={**solver_summary(result.records), "counters": result.meta.get("counters", {})},
            stats=shard_statistics(result), seconds=seconds, input_names=result.input_names,
        )
        storage.put_file(shard.key, tmp, content_type="application/x-hdf5")
    finally:
        os.unlink(tmp)
    # the record is written after the object: a record always describes a complete shard
    storage.put_json(keys.shard_record(job.dataset_id, shard.split, shard.shard), record.to_json())
    return record


# ----------------------------------------------------------------------------- finalize
def _combine_stats(records: list[ShardRecord]) -> dict:
    total: dict[str, list[float]] = {}
    for rec in records:
        for name, (n, s, q) in rec.stats.items():
            acc = total.setdefault(name, [0.0, 0.0, 0.0])
            acc[0] += n
            acc[1] += s
            acc[2] += q
    out = {}
    for name, (n, s, q) in total.items():
        mean = s / n if n else 0.0
        out[name] = {"mean": mean, "std": math.sqrt(max(q / n - mean * mean, 0.0)) if n else 0.0, "count": int(n)}
    return out


def _combine_solver(records: list[ShardRecord]) -> dict:
    engines: Counter = Counter()
    counters: Counter = Counter()
    for rec in records:
        engines.update(rec.solver["engines"])
        counters.update(rec.solver.get("counters", {}))
    samples = sum(rec.solver["samples"] for rec in records)
    seconds = sum(rec.solver["seconds_sum"] for rec in records)
    return {
        "samples": samples,
        "counters": dict(counters),
        "mean_iterations": sum(r.solver["iterations_sum"] for r in records) / max(samples, 1),
        "max_iterations": max((r.solver["iterations_max"] for r in records), default=0),
        "mean_matvecs": sum(r.solver["matvecs_sum"] for r in records) / max(samples, 1),
        "residual_max": max((r.solver["residual_max"] for r in records), default=0.0),
        "seconds_per_sample": seconds / max(samples, 1),
        "engines": dict(engines),
        "fallbacks": sum(r.solver["fallbacks"] for r in records),
        "unconverged": sum(r.solver["unconverged"] for r in records),
    }


def _file_entry(storage: Storage, dataset_id: str, key: str, data: bytes | None = None) -> dict:
    data = storage.get_bytes(key) if data is None else data
    return {"path": key.removeprefix(keys.prefix(dataset_id)), "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


def finalize(storage: Storage, job: JobBase, plan: Plan) -> dict:
    """Check all shards, write ``stats.json`` and then ``manifest.json``; returns the manifest."""
    dataset_id = job.dataset_id
    existing = storage_manifest(storage, dataset_id)
    if existing is not None:
        return existing
    records = []
    for shard in plan.shards():
        rec = existing_shard(storage, dataset_id, shard.split, shard.shard)
        if rec is None:
            raise StorageError(f"shard {shard.name} of {dataset_id} is missing or does not match its record",
                               key=shard.key)
        records.append(rec)
    train = [r for r in records if r.split == "train"] or records
    stats = {"dataset_id": dataset_id, "split_used": "train" if any(r.split == "train" for r in records) else "all",
             "fields": _combine_stats(train), "solver": _combine_solver(records),
             "solver_by_split": {name: _combine_solver([r for r in records if r.split == name])
                                 for name in keys.SPLITS if any(r.split == name for r in records)}}
    stats_bytes = canonical_json(stats)
    storage.put_bytes(keys.stats(dataset_id), stats_bytes, content_type="application/json")
    family, spec = get_family(job.family), job.family_spec()
    files = [_file_entry(storage, dataset_id, keys.spec(dataset_id)),
             _file_entry(storage, dataset_id, keys.plan(dataset_id)),
             _file_entry(storage, dataset_id, keys.stats(dataset_id), stats_bytes)]
    for r in records:
        files.append({"path": r.key.removeprefix(keys.prefix(dataset_id)), "bytes": r.bytes,
                      "sha256": r.sha256, "split": r.split, "shard": r.shard, "samples": r.samples,
                      "x": r.x, "y": r.y})
    manifest = {
        "dataset_id": dataset_id, "family": job.family, "grid": list(spec.shape),
        "samples": job.samples, "input_names": family.input_names(spec), "scalar_names": family.scalar_names(spec),
        "splits": {name: {"samples": sum(r.samples for r in records if r.split == name),
                          "shards": sum(1 for r in records if r.split == name)}
                   for name in keys.SPLITS},
        "files": files, "solver": stats["solver"], "ordering": plan.ordering,
        "engine": plan.engine,
        "spec": job.model_dump(mode="json"), "pdeforge_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    storage.put_json(keys.manifest(dataset_id), manifest)  # last: the dataset is complete iff it exists
    return manifest


def storage_manifest(storage: Storage, dataset_id: str) -> dict | None:
    try:
        return storage.get_json(keys.manifest(dataset_id))
    except ObjectNotFound:
        return None
