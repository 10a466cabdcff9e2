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

from pdeforge import __version__
from pdeforge.solvers.engines import EngineDecision, FactorCache, pilot
from pdeforge.solvers.families import get_family
from pdeforge.solvers.generate import solve_sequence
from pdeforge.solvers.ordering import order_samples
from pdeforge.solvers.resample import interpolate

from . import keys, metadata
from .dataset import SAMPLE_ORDER, ShardWriter, claims, os_errors_of_hdf5, output_channels, sha256_file
from .errors import JobCancelled, ObjectNotFound, StorageError
from .records import Plan, ShardPlan, ShardRecord
from .spec import FORMAT_VERSION, JobBase, parse_spec
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
        finest = job.grid.n if job.paired else None
        splits[name] = [ShardPlan(name, k, keys.shard(job.dataset_id, name, k, finest), part.tolist(), engine.chosen)
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
        parts = [(record.key, record.bytes)] + [(c["key"], c["bytes"]) for c in record.companions.values()]
        if all(storage.stat(key).size == size for key, size in parts):
            return record
    except ObjectNotFound:
        pass
    return None


def software_versions() -> dict[str, str]:
    """Versions of PDEForge and the numerical libraries that produce a dataset (recorded in it)."""
    from importlib import metadata

    import h5py
    import scipy

    out = {"pdeforge": __version__, "numpy": np.__version__, "scipy": scipy.__version__, "h5py": h5py.__version__,
           "hdf5": h5py.version.hdf5_version}
    for dist in ("pyamg", "scikit-sparse"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def shard_attrs(job: JobBase, shard: ShardPlan, resolution: int | None = None) -> dict:
    """Root attributes of a shard beyond the layout: identity, spec, claims, versions (paired datasets:
    the shard's resolution and all of them)."""
    attrs = {"spec": job.canonical_json(), "dataset_id": job.dataset_id, "split": shard.split, "shard": shard.shard,
             "claims": claims(job.output.dtype, job.solver.rtol, job.solver.atol, job.family_spec().time),
             "sampling": job.sampling, "software_versions": software_versions()}
    if job.paired:
        attrs.update(resolution=resolution, resolutions=job.resolutions)
    return attrs


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
        "steps_sum": int(sum(r.steps for r in records)),
        "time_error_max": max((r.time_error_estimate for r in records if r.time_error_estimate is not None),
                              default=None),
    }


def solve_shard(
    storage: Storage,
    job: JobBase,
    shard: ShardPlan,
    *,
    on_progress: Callable[[int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    cache: FactorCache | None = None,
    on_alive: Callable[[], None] | None = None,
) -> ShardRecord:
    """Solve one planned shard and store it; returns its record (idempotent, see module doc).

    ``on_progress(done)`` is called after every sample; ``should_cancel()`` is polled
    between samples and stops the shard with :class:`JobCancelled`; ``cache`` is the
    worker process's factor cache; ``on_alive()`` is called after every stored frame of a
    trajectory (a sign of life while one long trajectory, or a batch of them, is solved).
    """
    done = existing_shard(storage, job.dataset_id, shard.split, shard.shard)
    if done is not None:
        return done
    family = get_family(job.family)
    options = dataclasses.replace(job.solver_options(), ordering="none", engine=shard.engine)  # the plan ordered them
    resolutions, dim = job.resolutions, job.grid.dim
    cells = {r: r**dim for r in resolutions}
    work, per_sample = 0, sum(cells.values())  # progress in samples: solved cells / cells of one sample
    current = resolutions[0]

    def check_cancel() -> None:
        if should_cancel is not None and should_cancel():
            raise JobCancelled(f"job {job.dataset_id} cancelled", job_id=job.dataset_id)

    def on_sample(_record) -> None:
        nonlocal work
        before = work // per_sample
        work += cells[current]
        if on_progress is not None and work // per_sample > before:
            on_progress(work // per_sample)
        check_cancel()

    check_cancel()
    t0 = time.perf_counter()
    parts: dict[int, dict] = {}
    try:
        for r in resolutions:  # coarse to fine: a coarse solution starts the iterative solve of the finer one
            current = r
            key = shard.key if r == job.grid.n else keys.shard(job.dataset_id, shard.split, shard.shard, r)
            coarser = parts[max(parts)]["path"] if parts else None
            parts[r] = _solve_part(job, shard, family, options, r, key, coarser, on_sample, cache, on_alive)
        records = {r: _part_record(job, shard, part, r) for r, part in parts.items()}
        finest = records.pop(job.grid.n)
        record = dataclasses.replace(finest, seconds=time.perf_counter() - t0,
                                     companions={str(r): rec.to_json() for r, rec in records.items()},
                                     resolution=job.grid.n if job.paired else None)
        for r, part in sorted(parts.items(), key=lambda kv: kv[0] == job.grid.n):  # the plan's key last
            storage.put_file(part["key"], part["path"], content_type="application/x-hdf5")
    finally:
        for part in parts.values():
            os.unlink(part["path"])
    # the record is written after the objects: a record always describes a complete shard
    storage.put_json(keys.shard_record(job.dataset_id, shard.split, shard.shard), record.to_json())
    return record


class _AliveSink:
    """The shard writer, with a sign of life after every frame it stores."""

    def __init__(self, writer: ShardWriter, alive: Callable[[], None]) -> None:
        self.writer, self.alive = writer, alive

    def add(self, solved) -> None:
        self.writer.add(solved)

    def add_frame(self, position: int, k: int, frame) -> None:
        self.writer.add_frame(position, k, frame)
        self.alive()


def _solve_part(job: JobBase, shard: ShardPlan, family, options, resolution: int, key: str, coarser: str | None,
                on_sample, cache, on_alive=None) -> dict:
    """Solve the shard's samples on the grid of ``resolution`` cells into a temporary HDF5 file; an
    iterative engine starts each solve from the sample's solution in ``coarser`` (a finished part),
    interpolated.  Returns the part: path, key, writer summary, records, counters."""
    spec = job.family_spec().at(resolution)
    fd, tmp = tempfile.mkstemp(suffix=".h5", prefix="pdeforge-shard-")
    os.close(fd)
    try:
        with os_errors_of_hdf5():  # a full temporary disk is an OSError (transient), not a failed job
            return _write_part(job, shard, family, options, spec, tmp, key, coarser, on_sample, cache, on_alive)
    except BaseException:
        os.unlink(tmp)
        raise


def _write_part(job: JobBase, shard: ShardPlan, family, options, spec, tmp: str, key: str, coarser: str | None,
                on_sample, cache, on_alive=None) -> dict:
    writer = ShardWriter(tmp, family, spec, len(shard.indices), precision=job.output.dtype,
                         complex_storage=job.output.complex, compression=job.output.compression,
                         attrs=shard_attrs(job, shard, spec.n))
    guess = None if coarser is None else CoarseGuesses(coarser, spec.n, spec.dim)
    try:
        sink = writer if on_alive is None else _AliveSink(writer, on_alive)
        meta = solve_sequence(family, spec, job.seed, shard.indices, options, sink, on_sample=on_sample,
                              cache=cache, precision=job.output.dtype, initial_guess=guess)
    except BaseException:
        writer.abort()
        raise
    finally:
        if guess is not None:
            guess.close()
    info = writer.close({"engine": meta["engine"]})
    return {"path": tmp, "key": key, "info": info, "writer": writer, "meta": meta}


def _part_record(job: JobBase, shard: ShardPlan, part: dict, resolution: int) -> ShardRecord:
    info, writer = part["info"], part["writer"]
    return ShardRecord(
        split=shard.split, shard=shard.shard, key=part["key"], bytes=os.path.getsize(part["path"]),
        sha256=sha256_file(part["path"]), samples=info["samples"], x=info["x"], y=info["y"],
        first_index=int(shard.indices[0]) if shard.indices else None,
        solver={**solver_summary(writer.records), "counters": part["meta"]["counters"]},
        stats=writer.moments, seconds=0.0, input_names=writer.in_names,
        resolution=resolution if job.paired else None)


class CoarseGuesses:
    """``guess(pos)``: the solution of the sample at position ``pos`` of a finished coarser shard file,
    interpolated to ``resolution`` cells per axis (steady datasets; see :func:`solve_sequence`)."""

    def __init__(self, path: str, resolution: int, dim: int) -> None:
        import h5py

        self.h5, self.resolution, self.dim = h5py.File(path, "r"), resolution, dim

    def __call__(self, pos: int) -> np.ndarray | None:
        y = self.h5["y"]
        if y.ndim != 2 + self.dim or y.shape[1] != 1:  # one channel (a real_imag pair is two): no guess
            return None
        v = y[pos, 0]
        return interpolate(v.astype(np.complex128 if np.iscomplexobj(v) else np.float64), self.resolution).ravel()

    def close(self) -> None:
        self.h5.close()


# ----------------------------------------------------------------------------- finalize
#: what regenerating the same spec gives (stated in every manifest; tests/workers/test_dataset.py checks it)
REPRODUCIBILITY = ("x (and scalars/, inputs/) are a pure function of (seed, sample index): bit-identical whenever the "
                   "spec is generated again. y is bit-identical too when solver.engine names an engine (same "
                   "library versions and CPU); with engine 'auto' the pilot may pick another engine on another run "
                   "or machine, which changes y only within the solver tolerance (rtol).")



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
        "steps_per_sample": sum(r.solver.get("steps_sum", 0) for r in records) / max(samples, 1),
        "time_error_max": max((r.solver["time_error_max"] for r in records if r.solver.get("time_error_max") is not None),
                              default=None),
    }


def _file_entry(storage: Storage, dataset_id: str, key: str, data: bytes | None = None) -> dict:
    data = storage.get_bytes(key) if data is None else data
    return {"path": key.removeprefix(keys.prefix(dataset_id)), "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


def _shard_entries(dataset_id: str, r: ShardRecord) -> list[dict]:
    """A shard's files in the manifest (paired datasets: one per resolution, coarse to fine, each with its
    ``resolution``); ``final``: the file will not change (its record is written after it)."""
    parts = [(int(res), c) for res, c in r.companions.items()] + [(r.resolution, dataclasses.asdict(r))]
    out = []
    for res, c in sorted(parts, key=lambda p: p[0] or 0):
        entry = {"path": c["key"].removeprefix(keys.prefix(dataset_id)), "bytes": c["bytes"], "sha256": c["sha256"],
                 "split": r.split, "shard": r.shard, "samples": c["samples"], "x": c["x"], "y": c["y"], "final": True}
        if res is not None:
            entry["resolution"] = res
        out.append(entry)
    return out


def _put_bytes(storage: Storage, dataset_id: str, key: str, data: bytes, content_type: str) -> dict:
    storage.put_bytes(key, data, content_type=content_type)
    return _file_entry(storage, dataset_id, key, data)


def _manifest_body(job: JobBase, plan: Plan, records: list[ShardRecord], files: list[dict], *,
                   complete: bool) -> dict:
    """Everything a manifest says about the dataset and its finished shards."""
    family, spec = get_family(job.family), job.family_spec()
    return {
        "dataset_id": job.dataset_id, "format_version": FORMAT_VERSION, "complete": complete,
        "family": job.family, "summary": family.summary, "grid": list(spec.shape), "samples": job.samples,
        "sampling": job.sampling, "resolutions": job.resolutions if job.paired else None,
        "input_names": family.input_names(spec), "output_names": output_channels(family, spec, job.output.complex),
        "scalar_names": family.scalar_names(spec), "extra_inputs": [e.name for e in family.extra_inputs(spec)],
        "boundary_conditions": family.boundary_conditions(spec), "grid_type": family.grid_type(spec),
        "time": None if spec.time is None else {**dataclasses.asdict(spec.time), "steps": spec.time.steps,
                                                "frame_times": spec.time.frame_times().tolist()},
        "claims": claims(job.output.dtype, job.solver.rtol, job.solver.atol, spec.time), "sample_order": SAMPLE_ORDER,
        "reproducibility": REPRODUCIBILITY,
        "splits": {name: {"samples": sum(r.samples for r in records if r.split == name),
                          "shards": sum(1 for r in records if r.split == name),
                          "shards_planned": len(plan.splits.get(name, []))}
                   for name in keys.SPLITS},
        "shards_total": plan.shards_total, "shards_final": len(records),
        "files": files, "solver": _combine_solver(records), "ordering": plan.ordering, "engine": plan.engine,
        "spec": job.model_dump(mode="json"), "pdeforge_version": __version__,
        "software_versions": software_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def finished_records(storage: Storage, dataset_id: str) -> list[ShardRecord]:
    """Records of the shards finished so far (one listing; a record is only written after its file)."""
    prefix = keys.prefix(dataset_id) + "shards/"
    return [ShardRecord.from_json(storage.get_json(info.key)) for info in storage.list(prefix)
            if info.key.endswith(".json")]


def partial_manifest(storage: Storage, job: JobBase, plan: Plan, records: list[ShardRecord]) -> dict:
    """The manifest of a dataset in progress: the finished (final) shards so far, ``complete: false``."""
    dataset_id = job.dataset_id
    files = [_file_entry(storage, dataset_id, keys.spec(dataset_id)),
             _file_entry(storage, dataset_id, keys.plan(dataset_id))]
    records = sorted(records, key=lambda r: (keys.SPLITS.index(r.split), r.shard))
    files += [e for r in records for e in _shard_entries(dataset_id, r)]
    return _manifest_body(job, plan, records, files, complete=False)


def finalize(storage: Storage, job: JobBase, plan: Plan) -> dict:
    """Check all shards; write ``stats.json``, ``README.md`` (dataset card) and ``croissant.json``,
    then ``manifest.json`` last; returns the manifest."""
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
    if job.paired:  # the same statistics of every resolution (the top-level ones are the finest's)
        at = {str(res): [ShardRecord(**r.companions[str(res)])
                         for r in records] for res in job.resolutions[:-1]}
        at[str(job.grid.n)] = records
        stats["by_resolution"] = {res: {"fields": _combine_stats([r for r in recs if r.split == "train"] or recs),
                                        "solver": _combine_solver(recs)} for res, recs in at.items()}
    files = [_file_entry(storage, dataset_id, keys.spec(dataset_id)),
             _file_entry(storage, dataset_id, keys.plan(dataset_id)),
             _put_bytes(storage, dataset_id, keys.stats(dataset_id), canonical_json(stats), "application/json")]
    shard_files = [e for r in records for e in _shard_entries(dataset_id, r)]
    manifest = _manifest_body(job, plan, records, files + shard_files, complete=True)
    family, spec = get_family(job.family), job.family_spec()
    text = metadata.description(manifest)
    first = records[0]
    features = {n: metadata.hf_features(*_xy_at(first, n, job.grid.n), family.scalar_names(spec),
                                        {e.name: list(e.shape) for e in family.extra_inputs(spec.at(n))},
                                        job.output.dtype, spec.time is not None) for n in job.resolutions}
    card = metadata.dataset_card(manifest, features, text).encode()
    files.append(_put_bytes(storage, dataset_id, keys.card(dataset_id), card, "text/markdown"))
    crate = canonical_json(metadata.croissant(manifest, files + shard_files, text))
    files.append(_put_bytes(storage, dataset_id, keys.croissant(dataset_id), crate, "application/ld+json"))
    manifest["files"] = files + shard_files
    storage.put_json(keys.manifest(dataset_id), manifest)  # last: the dataset is complete iff it exists
    return manifest


def _xy_at(record: ShardRecord, resolution: int, finest: int) -> tuple[dict, dict]:
    """x and y shapes/dtypes of a shard record at one of its resolutions."""
    part = record.companions[str(resolution)] if resolution != finest else dataclasses.asdict(record)
    return part["x"], part["y"]


def storage_manifest(storage: Storage, dataset_id: str) -> dict | None:
    try:
        return storage.get_json(keys.manifest(dataset_id))
    except ObjectNotFound:
        return None
