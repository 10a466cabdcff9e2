"""Generate a dataset in-process (no Redis, no Celery): ``pdeforge generate SPEC --out DIR``.

Runs the same :mod:`pdeforge.workers.pipeline` functions as the distributed service -- plan,
solve every shard, finalize -- with a process pool across cores, writing the
dataset's files straight into ``DIR`` (``DIR/manifest.json``, ``DIR/data/...``: the
layout ``pdeforge download ID DIR`` produces).  Finished shards are skipped, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from pdeforge.solvers.engines import FactorCache
from pdeforge.solvers.threads import single_threaded_blas

from . import keys, pipeline
from .errors import InvalidKey
from .records import ShardPlan
from .spec import JobBase, parse_spec
from .storage import LocalStorage, ObjectInfo


class DatasetFolder(LocalStorage):
    """A local folder holding ONE dataset at its top level: key ``datasets/<id>/<path>`` is the file
    ``<folder>/<path>`` (the other keys do not exist), so the folder looks like a download."""

    def __init__(self, root, dataset_id: str) -> None:
        super().__init__(root)
        self.dataset_prefix = keys.prefix(dataset_id)
        self._plain = LocalStorage(self.root)  # the folder under its own keys (for listings)

    def _path(self, key: str):
        if key.rstrip("/") + "/" == self.dataset_prefix:
            return self.root
        if not key.startswith(self.dataset_prefix):
            raise InvalidKey(f"this folder holds only {self.dataset_prefix}", key=key, backend=self.url)
        return super()._path(key.removeprefix(self.dataset_prefix))

    def list(self, prefix: str = ""):
        folder, top = prefix.rstrip("/"), self.dataset_prefix.rstrip("/")
        if folder in ("", "datasets", top):
            inner = ""
        elif folder.startswith(top + "/"):
            inner = folder[len(top) + 1:]
        else:
            return iter(())
        return (ObjectInfo(self.dataset_prefix + info.key, info.size, info.modified, info.etag)
                for info in self._plain.list(inner))



_counter = None  # per-process shared sample counter (set by the pool initializer)
_cache: FactorCache | None = None  # per-process factor cache (factorize_once across shards)


def _init(counter) -> None:
    global _counter, _cache
    single_threaded_blas()
    _counter, _cache = counter, FactorCache()


def _pool_context():
    """Workers forked from a clean server process, never from the caller: a caller that has run an
    OpenMP-threaded solver (CHOLMOD uses OpenMP) cannot be forked safely (libgomp deadlocks in the
    child).  The server preloads the pipeline, so starting a worker costs a fork, not an import."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["pdeforge.workers.standalone"])
    return ctx


def _bump(_done: int) -> None:
    with _counter.get_lock():
        _counter.value += 1


def _solve(root: str, spec_json: str, shard: dict) -> None:
    job = parse_spec(spec_json)
    pipeline.solve_shard(DatasetFolder(root, job.dataset_id), job, ShardPlan.from_json(shard), on_progress=_bump,
                         cache=_cache)


def generate_local(job: JobBase, out: str | Path, *, workers: int | None = None,
                   on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Write dataset ``job`` into folder ``out``; returns the manifest.

    ``on_progress(samples_done, samples_total)`` is called a few times per second.  With
    ``workers=1`` (or one shard left) the shards are solved in this process; otherwise by a
    pool of processes started from a clean server process, so -- as for every
    ``multiprocessing`` program -- a script calling this must guard its top level with
    ``if __name__ == "__main__":``.
    """
    single_threaded_blas()  # sets the thread variables the pool's server process starts with
    root = Path(out).resolve()
    root.mkdir(parents=True, exist_ok=True)
    storage = DatasetFolder(root, job.dataset_id)
    pipeline.write_spec(storage, job)
    plan = pipeline.load_or_make_plan(storage, job)
    shards = plan.shards()
    pending = [s for s in shards if pipeline.existing_shard(storage, job.dataset_id, s.split, s.shard) is None]
    finished = sum(len(s.indices) for s in shards) - sum(len(s.indices) for s in pending)
    workers = max(1, min(workers or os.cpu_count() or 1, len(pending) or 1))
    if on_progress:
        on_progress(finished, job.samples)
    if workers == 1:
        cache, count = FactorCache(), [finished]

        def bump(_done: int) -> None:
            count[0] += 1
            if on_progress:
                on_progress(count[0], job.samples)

        for shard in pending:
            pipeline.solve_shard(storage, job, shard, on_progress=bump, cache=cache)
    elif pending:
        ctx = _pool_context()
        counter = ctx.Value("q", 0)
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init, initargs=(counter,)) as pool:
            futures = {pool.submit(_solve, str(root), job.canonical_json(), s.to_json()) for s in pending}
            while futures:
                done, futures = wait(futures, timeout=0.25, return_when=FIRST_COMPLETED)
                for fut in done:
                    fut.result()  # re-raise a worker's exception
                if on_progress:
                    on_progress(finished + counter.value, job.samples)
    manifest = pipeline.finalize(storage, job, plan)
    if on_progress:
        on_progress(job.samples, job.samples)
    return manifest


def progress_printer(desc: str = "samples"):
    """A tqdm bar (samples/s, ETA) as an ``on_progress`` callback; call ``.close()`` at the end."""
    from tqdm import tqdm

    bar = tqdm(total=None, unit="sample", desc=desc, smoothing=0.1)

    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    update.close = bar.close  # type: ignore[attr-defined]
    update.started = time.perf_counter()  # type: ignore[attr-defined]
    return update
