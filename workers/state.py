"""Job state in Redis: status, progress, fan-in, cancellation, shard leases.

Keys (all under ``{prefix}:``)::

    job:{id}              hash   status, samples/shards totals, timestamps, error, summary (JSON)
    job:{id}:progress     hash   shard name -> samples finished in that shard (idempotent)
    job:{id}:done         set    finished shard names (fan-in: the SADD that completes it fires finalize)
    job:{id}:attempts     hash   shard name -> deliveries started (poison-shard cap)
    job:{id}:cancel       string cancellation flag
    job:{id}:lease:{shard} string token of the worker currently solving the shard (TTL, renewed)
    jobs                  zset   job id by creation time (listing, pagination)
    batch:{id}            string JSON list of the batch's job ids
    metrics               hash   service counters (samples and shards solved, solve seconds)

Status: :class:`~pdeforge.workers.status.JobStatus` (queued -> planning -> running -> finalizing ->
succeeded | failed | cancelled).
Progress is per shard (``HSET``), so a shard that is re-run after a crash overwrites
instead of double counting.  The spec and plan live in object storage, so a job
whose Redis record is lost can be found again and resumed from storage.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import redis

from .status import STATUSES, TERMINAL, JobStatus

# Fan-in: add the shard; report 1 only for the call that made the set complete.
_DONE = """
local added = redis.call('SADD', KEYS[1], ARGV[1])
if added == 1 then
  redis.call('HINCRBY', KEYS[2], 'samples_solved', ARGV[3])
  redis.call('HINCRBYFLOAT', KEYS[2], 'solve_seconds', ARGV[4])
  redis.call('HINCRBY', KEYS[2], 'shards_solved', 1)
  if redis.call('SCARD', KEYS[1]) == tonumber(ARGV[2]) then return 1 end
end
return 0
"""
# Set status unless the job already reached a terminal state (unless forced).
_STATUS = """
local terminal = {%s}
local cur = redis.call('HGET', KEYS[1], 'status')
if cur == false then return 0 end
if ARGV[2] ~= '1' and terminal[cur] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], unpack(ARGV, 3))
return 1
""" % ", ".join(f"['{s.value}'] = true" for s in sorted(TERMINAL))
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class JobStore:
    """Redis-backed job records under ``prefix``."""

    def __init__(self, client: redis.Redis, prefix: str = "pdeforge") -> None:
        self.r = client
        self.prefix = prefix
        self._done = client.register_script(_DONE)
        self._status = client.register_script(_STATUS)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)

    @classmethod
    def from_url(cls, url: str, prefix: str = "pdeforge") -> JobStore:
        return cls(redis.Redis.from_url(url, decode_responses=True, socket_timeout=10,
                                        socket_connect_timeout=5, health_check_interval=30), prefix)

    def _k(self, job_id: str, part: str = "") -> str:
        return f"{self.prefix}:job:{job_id}" + (f":{part}" if part else "")

    # ----- records ---------------------------------------------------------------------------
    def create(self, job_id: str, *, samples_total: int, family: str, extra: dict | None = None) -> dict:
        """(Re)create the record of ``job_id`` as queued, keeping nothing of an earlier run's state."""
        created = now_iso()
        fields = {"id": job_id, "status": JobStatus.QUEUED.value, "family": family, "samples_total": samples_total,
                  "shards_total": 0, "created": created, "updated": created, "started": "", "finished": "",
                  "error": "", "summary": "{}"}
        fields.update({k: v if isinstance(v, (str, int, float)) else json.dumps(v) for k, v in (extra or {}).items()})
        pipe = self.r.pipeline()
        pipe.delete(self._k(job_id), self._k(job_id, "progress"), self._k(job_id, "done"),
                    self._k(job_id, "attempts"), self._k(job_id, "cancel"))
        pipe.hset(self._k(job_id), mapping=fields)
        pipe.zadd(f"{self.prefix}:jobs", {job_id: time.time()})
        pipe.execute()
        return self.get(job_id)

    def get(self, job_id: str) -> dict | None:
        return self.get_many([job_id])[0]

    def get_many(self, job_ids: list[str]) -> list[dict | None]:
        """The records of ``job_ids`` (None for unknown ones) in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self._k(job_id))
            pipe.hvals(self._k(job_id, "progress"))
            pipe.scard(self._k(job_id, "done"))
            pipe.exists(self._k(job_id, "cancel"))
        replies = pipe.execute()
        out = []
        for j in range(len(job_ids)):
            rec, progress, done, cancel = replies[4 * j : 4 * j + 4]
            if not rec:
                out.append(None)
                continue
            for key in ("samples_total", "shards_total"):
                rec[key] = int(rec.get(key) or 0)
            rec["summary"] = json.loads(rec.get("summary") or "{}")
            rec["samples_done"] = sum(int(v) for v in progress)
            rec["shards_done"] = int(done)
            rec["cancel_requested"] = bool(cancel)
            out.append(rec)
        return out

    def ping(self) -> None:
        """Raise ``redis.RedisError`` unless Redis answers."""
        self.r.ping()

    def update(self, job_id: str, **fields) -> None:
        fields["updated"] = now_iso()
        self.r.hset(self._k(job_id), mapping={k: v if isinstance(v, (str, int, float)) else json.dumps(v)
                                              for k, v in fields.items()})

    def set_status(self, job_id: str, status: JobStatus, *, force: bool = False, **fields) -> bool:
        """Move to ``status`` unless the job is already terminal (``force`` overrides)."""
        status = JobStatus(status)
        fields["updated"] = now_iso()
        if status.terminal:
            fields.setdefault("finished", now_iso())
        flat = []
        for k, v in fields.items():
            flat += [k, v if isinstance(v, (str, int, float)) else json.dumps(v)]
        return bool(self._status(keys=[self._k(job_id)], args=[status.value, "1" if force else "0", *flat]))

    def ids(self, *, start: int = 0, count: int = 100) -> list[str]:
        """Job ids, newest first."""
        return list(self.r.zrevrange(f"{self.prefix}:jobs", start, start + count - 1))

    def delete(self, job_id: str) -> None:
        keys = [self._k(job_id, p) for p in ("", "progress", "done", "attempts", "cancel")]
        self.r.delete(*keys)
        self.r.zrem(f"{self.prefix}:jobs", job_id)

    # ----- progress and fan-in ------------------------------------------------------------------
    def progress(self, job_id: str, shard: str, samples: int) -> None:
        self.r.hset(self._k(job_id, "progress"), shard, samples)

    def shard_done(self, job_id: str, shard: str, samples: int, shards_total: int, seconds: float = 0.0) -> bool:
        """Record a finished shard; True exactly once, for the call that completed the set.

        Newly finished shards also count into the service metrics (samples, solve seconds).
        """
        self.progress(job_id, shard, samples)
        return bool(self._done(keys=[self._k(job_id, "done"), f"{self.prefix}:metrics"],
                               args=[shard, shards_total, samples, float(seconds)]))

    def metrics(self) -> dict[str, float]:
        raw = self.r.hgetall(f"{self.prefix}:metrics")
        return {k: float(v) for k, v in raw.items()}

    def status_counts(self, limit: int = 100_000) -> dict[str, int]:
        """Jobs per status over the ``limit`` most recent jobs."""
        ids = self.ids(count=limit)
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(self._k(job_id), "status")
        counts = {s: 0 for s in STATUSES}
        for status in pipe.execute():
            if status in counts:
                counts[status] += 1
        return counts

    def done_shards(self, job_id: str) -> set[str]:
        return set(self.r.smembers(self._k(job_id, "done")))

    # ----- batches -----------------------------------------------------------------------------
    def put_batch(self, batch_id: str, job_ids: list[str]) -> None:
        self.r.set(f"{self.prefix}:batch:{batch_id}", json.dumps(job_ids))

    def batch(self, batch_id: str) -> list[str] | None:
        """The job ids of a batch, or None for an unknown batch."""
        raw = self.r.get(f"{self.prefix}:batch:{batch_id}")
        return None if raw is None else json.loads(raw)

    # ----- cancellation ------------------------------------------------------------------------
    def request_cancel(self, job_id: str) -> None:
        self.r.set(self._k(job_id, "cancel"), "1")

    def cancelled(self, job_id: str) -> bool:
        return bool(self.r.exists(self._k(job_id, "cancel")))

    # ----- poison shards and leases -------------------------------------------------------------
    def attempt(self, job_id: str, shard: str) -> int:
        """Count one more delivery of ``shard``; returns the number of deliveries so far."""
        return int(self.r.hincrby(self._k(job_id, "attempts"), shard, 1))

    def acquire_lease(self, job_id: str, shard: str, token: str, ttl: float) -> bool:
        return bool(self.r.set(self._k(job_id, f"lease:{shard}"), token, nx=True, px=int(ttl * 1000)))

    def renew_lease(self, job_id: str, shard: str, token: str, ttl: float) -> bool:
        return bool(self._renew(keys=[self._k(job_id, f"lease:{shard}")], args=[token, int(ttl * 1000)]))

    def release_lease(self, job_id: str, shard: str, token: str) -> None:
        self._release(keys=[self._k(job_id, f"lease:{shard}")], args=[token])
