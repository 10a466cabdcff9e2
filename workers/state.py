"""Job state in Redis: status, owners, progress, fan-in, cancellation, leases and dispatched units.

Keys (all under ``{prefix}:``)::

    job:{id}                hash   status, samples/shards totals, timestamps, error, error_code, summary
    job:{id}:progress       hash   shard name -> samples finished in that shard (idempotent)
    job:{id}:done           set    finished shard names (fan-in: the SADD that completes it fires finalize)
    job:{id}:attempts       hash   unit -> deliveries that started it and did not end cleanly (poison cap)
    job:{id}:cancel         string cancellation flag
    job:{id}:lease:{unit}   string ``host:pid:token`` of the worker running the unit (TTL, renewed)
    job:{id}:units          hash   unit -> ``state|time|retries``: every unit (``@plan``, a shard name,
                                   ``@finalize``) that must still run; what the recovery sweep reads
    job:{id}:owners         hash   principal -> ``active`` | ``cancelled`` (that principal's handle)
    jobs                    zset   every job id by creation time (admin listing)
    active                  set    ids of jobs that are not terminal (what the sweep walks)
    owner:{p}:jobs          zset   principal p's job handles by submission time (p's listing)
    owner:{p}:active        zset   p's active jobs scored by their samples (quotas)
    batch:{id}              string JSON ``{"owner": p, "jobs": [ids]}``
    metrics                 hash   service counters (samples and shards solved, solve seconds, unknowns)
    epoch                   string set once per Redis dataset; missing = Redis lost its data
    sweeper                 string the recovery sweep's leader lock (TTL)

A unit's state is ``queued`` (sent to the broker at ``time``), ``started`` (a worker took its
lease at ``time``) or ``retry`` (due again at ``time`` after a transient error).  The sweep
(:mod:`pdeforge.workers.recovery`) re-sends a unit that is ``started`` but whose lease expired,
``retry`` and due, or ``queued`` long ago while the broker queue is empty.

Status: :class:`~pdeforge.workers.status.JobStatus`.  Every status change goes through one Lua
script (:data:`_STATUS`), which also drops a job that became terminal from the ``active`` set
and from its owners' quota sets; creation is atomic (:meth:`JobStore.submit`): the record,
the owner's handle and the ``@plan`` unit are written in one script that reports whether
this call created the job, so exactly one caller enqueues its plan.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import redis

from .status import ACTIVE, STATUSES, TERMINAL, JobStatus

_TERMINAL_LUA = "{%s}" % ", ".join(f"['{s.value}'] = true" for s in sorted(TERMINAL))

# Remove a job that is now terminal from the active set and from every owner's quota set.
# KEYS[1] job hash; ARGV[1] prefix, ARGV[2] job id.  (Owners' keys are derived from the prefix:
# one Redis instance, not a cluster.)
_LEAVE_ACTIVE = """
local function leave_active(prefix, job_id)
  redis.call('SREM', prefix .. ':active', job_id)
  local owners = redis.call('HKEYS', prefix .. ':job:' .. job_id .. ':owners')
  for _, p in ipairs(owners) do redis.call('ZREM', prefix .. ':owner:' .. p .. ':active', job_id) end
  redis.call('DEL', prefix .. ':job:' .. job_id .. ':units')
end
"""

# Set status unless the job already reached a terminal state (unless forced).
# KEYS[1] job; ARGV: status, force, prefix, job id, then field/value pairs.
_STATUS = _LEAVE_ACTIVE + """
local terminal = %s
local cur = redis.call('HGET', KEYS[1], 'status')
if cur == false then return 0 end
if ARGV[2] ~= '1' and terminal[cur] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], unpack(ARGV, 5))
if terminal[ARGV[1]] then leave_active(ARGV[3], ARGV[4]) else redis.call('SADD', ARGV[3] .. ':active', ARGV[4]) end
return 1
""" % _TERMINAL_LUA

# Create-if-absent and add the principal's handle, atomically; quotas checked in the same step.
# KEYS: job, units, owners, jobs, active, owner_jobs, owner_active, progress, done, attempts, cancel
# ARGV: job id, principal, samples, max jobs (-1: none), max samples (-1: none), now (s),
# restart a succeeded job ('1': its dataset is gone), then the new record's fields.
# Returns {created, new_handle, previous status or '', quota error ('' | 'jobs' | 'samples'), used}.
_SUBMIT = """
local terminal = %s
local status = redis.call('HGET', KEYS[1], 'status')
local handle = redis.call('HGET', KEYS[3], ARGV[2])
local samples = tonumber(ARGV[3])
if status and not terminal[status] and handle == 'active' then return {0, 0, status, '', 0} end
local restart = (not status) or status == 'failed' or status == 'cancelled' or
                (status == 'succeeded' and ARGV[7] == '1')
local runs = restart or not terminal[status]
if runs then
  local count = redis.call('ZCARD', KEYS[7])
  local max_jobs, max_samples = tonumber(ARGV[4]), tonumber(ARGV[5])
  if max_jobs >= 0 and count + 1 > max_jobs then return {0, 0, status or '', 'jobs', count} end
  if max_samples >= 0 then
    local used = 0
    local scores = redis.call('ZRANGE', KEYS[7], 0, -1, 'WITHSCORES')
    for i = 2, #scores, 2 do used = used + tonumber(scores[i]) end
    if used + samples > max_samples then return {0, 0, status or '', 'samples', used} end
  end
end
local created = 0
if restart then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[8], KEYS[9], KEYS[10], KEYS[11])
  redis.call('HSET', KEYS[1], unpack(ARGV, 8))
  redis.call('HSET', KEYS[2], '@plan', 'queued|' .. ARGV[6] .. '|0')
  redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
  created = 1
end
redis.call('HSET', KEYS[3], ARGV[2], 'active')
redis.call('ZADD', KEYS[6], ARGV[6], ARGV[1])
if runs then
  redis.call('ZADD', KEYS[7], samples, ARGV[1])
  redis.call('SADD', KEYS[5], ARGV[1])
end
return {created, (handle == false) and 1 or 0, status or '', '', 0}
""" % _TERMINAL_LUA

# Restore a record lost from Redis (from storage), only if it is still absent.
# KEYS: job, units, owners, jobs, active; ARGV: prefix, job id, now, samples, status, n owners,
# then owner/state pairs, then field/value pairs.  Returns 1 if restored.
_RESTORE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local terminal = %s
local prefix, job_id, now, samples, status = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local n = tonumber(ARGV[6])
local fields_at = 7 + 2 * n
redis.call('HSET', KEYS[1], unpack(ARGV, fields_at))
redis.call('ZADD', KEYS[4], now, job_id)
for i = 0, n - 1 do
  local p, state = ARGV[7 + 2 * i], ARGV[8 + 2 * i]
  redis.call('HSET', KEYS[3], p, state)
  redis.call('ZADD', prefix .. ':owner:' .. p .. ':jobs', now, job_id)
  if state == 'active' and not terminal[status] then
    redis.call('ZADD', prefix .. ':owner:' .. p .. ':active', samples, job_id)
  end
end
if not terminal[status] then
  redis.call('SADD', KEYS[5], job_id)
  redis.call('HSET', KEYS[2], '@plan', 'queued|' .. now .. '|0')
end
return 1
""" % _TERMINAL_LUA

# A principal withdraws its handle (cancel); the job is cancelled when no active handle is
# left, or at once for an admin.  KEYS: job, owners, cancel; ARGV: prefix, job id, principal,
# admin, now (iso).  Returns {found, job cancelled now}.
_CANCEL = _LEAVE_ACTIVE + """
local terminal = %s
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {0, 0} end
local handle = redis.call('HGET', KEYS[2], ARGV[3])
local admin = ARGV[4] == '1'
if not admin and not handle then return {0, 0} end
if terminal[status] then return {1, 0} end
if handle then redis.call('HSET', KEYS[2], ARGV[3], 'cancelled') end
redis.call('ZREM', ARGV[1] .. ':owner:' .. ARGV[3] .. ':active', ARGV[2])
local left = 0
if not admin then
  local owners = redis.call('HGETALL', KEYS[2])
  for i = 2, #owners, 2 do if owners[i] == 'active' then left = left + 1 end end
end
if left > 0 then return {1, 0} end
redis.call('SET', KEYS[3], '1')
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'updated', ARGV[5], 'finished', ARGV[5])
leave_active(ARGV[1], ARGV[2])
return {1, 1}
""" % _TERMINAL_LUA

# Remove a principal's handle; returns the number of handles left (-1: it had none).
# KEYS: owners; ARGV: prefix, job id, principal.
_DROP_HANDLE = """
if redis.call('HDEL', KEYS[1], ARGV[3]) == 0 then return -1 end
redis.call('ZREM', ARGV[1] .. ':owner:' .. ARGV[3] .. ':jobs', ARGV[2])
redis.call('ZREM', ARGV[1] .. ':owner:' .. ARGV[3] .. ':active', ARGV[2])
return redis.call('HLEN', KEYS[1])
"""

# Fan-in: add the shard, drop its unit; report 1 only for the call that made the set complete,
# which also registers the @finalize unit (so a lost finalize message is re-sent by the sweep).
# KEYS: done, metrics, units, progress; ARGV: shard, shards total, samples, seconds, unknowns, now.
_DONE = """
redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
redis.call('HDEL', KEYS[3], ARGV[1])
local added = redis.call('SADD', KEYS[1], ARGV[1])
if added == 1 then
  redis.call('HINCRBY', KEYS[2], 'samples_solved', ARGV[3])
  redis.call('HINCRBYFLOAT', KEYS[2], 'solve_seconds', ARGV[4])
  redis.call('HINCRBY', KEYS[2], 'shards_solved', 1)
  redis.call('HINCRBYFLOAT', KEYS[2], 'unknown_samples', tonumber(ARGV[3]) * tonumber(ARGV[5]))
  if redis.call('SCARD', KEYS[1]) == tonumber(ARGV[2]) then
    redis.call('HSET', KEYS[3], '@finalize', 'queued|' .. ARGV[6] .. '|0')
    return 1
  end
end
return 0
"""

# Take a unit's lease (or a dead holder's, named in ARGV[4]), mark it started, count the attempt.
# KEYS: lease, units, job, attempts; ARGV: value, ttl ms, unit, steal-from value or '', now.
# Returns {attempt, retries}: attempt -1 job unknown or over, 0 held by someone else.
_ACQUIRE = """
local terminal = %s
local status = redis.call('HGET', KEYS[3], 'status')
if (not status) or terminal[status] then return {-1, 0} end
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[4] then return {0, 0} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local retries = 0
local state = redis.call('HGET', KEYS[2], ARGV[3])
if state then retries = tonumber(string.match(state, '|(%%d+)$')) or 0 end
redis.call('HSET', KEYS[2], ARGV[3], 'started|' .. ARGV[5] .. '|' .. retries)
return {redis.call('HINCRBY', KEYS[4], ARGV[3], 1), retries}
""" % _TERMINAL_LUA

# Renew if still ours; if the key is gone (expired, or Redis lost it) take it again.
# Returns 1 ours, 0 someone else holds it.
_RENEW = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if cur == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Leader lock: take it if free or ours; extend it.  Returns 1 when held by ARGV[1].
_LEAD = """
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


#: Redis errors that mean "not reachable right now" (a restart, a blip, loading its AOF)
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


@dataclass(frozen=True)
class Unit:
    """What the ``units`` hash says about one unit of work."""

    name: str
    state: str  # queued | started | retry
    time: float  # queued/started at, or due at (retry)
    retries: int

    @classmethod
    def parse(cls, name: str, raw: str) -> Unit:
        state, _, rest = raw.partition("|")
        when, _, retries = rest.partition("|")
        try:
            return cls(name, state, float(when or 0), int(retries or 0))
        except ValueError:
            return cls(name, state, 0.0, 0)

    def encode(self) -> str:
        return f"{self.state}|{self.time:.3f}|{self.retries}"


def lease_value() -> str:
    """A fresh lease value naming this process: ``host:pid:token``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"


def holder_is_dead(value: str) -> bool:
    """Whether the lease ``value`` belongs to a process of this host that no longer runs (or to
    this very process: a unit is solved by one task at a time per process)."""
    host, _, rest = value.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is dead too
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _flat(fields: dict) -> list:
    out = []
    for k, v in fields.items():
        out += [k, v if isinstance(v, (str, int, float)) else json.dumps(v)]
    return out


@dataclass(frozen=True)
class SubmitResult:
    """What :meth:`JobStore.submit` did: ``created`` a run (enqueue its plan), gave the principal a
    ``new_handle``, or refused for a ``quota`` (``"jobs"`` / ``"samples"``, with ``used``)."""

    created: bool
    new_handle: bool
    previous: str
    quota: str = ""
    used: float = 0


class JobStore:
    """Redis-backed job records under ``prefix``."""

    def __init__(self, client: redis.Redis, prefix: str = "pdeforge") -> None:
        self.r = client
        self.prefix = prefix
        self._scripts = {name: client.register_script(src) for name, src in (
            ("status", _STATUS), ("submit", _SUBMIT), ("restore", _RESTORE), ("cancel", _CANCEL),
            ("drop", _DROP_HANDLE), ("done", _DONE), ("acquire", _ACQUIRE), ("renew", _RENEW),
            ("release", _RELEASE), ("lead", _LEAD))}

    @classmethod
    def from_url(cls, url: str, prefix: str = "pdeforge", *, socket_timeout: float = 10) -> JobStore:
        return cls(redis.Redis.from_url(url, decode_responses=True, socket_timeout=socket_timeout,
                                        socket_connect_timeout=5, health_check_interval=30), prefix)

    def _k(self, job_id: str, part: str = "") -> str:
        return f"{self.prefix}:job:{job_id}" + (f":{part}" if part else "")

    def _owner(self, principal: str, part: str) -> str:
        return f"{self.prefix}:owner:{principal}:{part}"

    # ----- creation ------------------------------------------------------------------------
    def _fields(self, job_id: str, samples_total: int, family: str, extra: dict | None) -> dict:
        created = now_iso()
        fields = {"id": job_id, "status": JobStatus.QUEUED.value, "family": family, "samples_total": samples_total,
                  "shards_total": 0, "created": created, "updated": created, "started": "", "finished": "",
                  "error": "", "error_code": "", "summary": "{}"}
        fields.update(extra or {})
        return fields

    def submit(self, job_id: str, principal: str, *, samples_total: int, family: str, max_jobs: int = -1,
               max_samples: int = -1, restart_succeeded: bool = False, extra: dict | None = None) -> SubmitResult:
        """Create the job unless it exists and is active (or succeeded), and give ``principal`` a
        handle on it -- one atomic step, so concurrent submits create it once.  A new run's
        ``@plan`` unit is registered as queued: the caller enqueues the plan iff ``created``."""
        keys = [self._k(job_id), self._k(job_id, "units"), self._k(job_id, "owners"), f"{self.prefix}:jobs",
                f"{self.prefix}:active", self._owner(principal, "jobs"), self._owner(principal, "active"),
                self._k(job_id, "progress"), self._k(job_id, "done"), self._k(job_id, "attempts"),
                self._k(job_id, "cancel")]
        args = [job_id, principal, samples_total, max_jobs, max_samples, f"{time.time():.3f}",
                "1" if restart_succeeded else "0", *_flat(self._fields(job_id, samples_total, family, extra))]
        created, new_handle, previous, quota, used = self._scripts["submit"](keys=keys, args=args)
        return SubmitResult(bool(created), bool(new_handle), previous or "", quota or "", float(used))

    def restore(self, job_id: str, *, status: str, samples_total: int, family: str,
                owners: dict[str, str], extra: dict | None = None) -> bool:
        """Re-create a record lost from Redis (from what storage keeps), only if it is still absent.
        An active one is restored as queued with its ``@plan`` unit (the caller enqueues the plan)."""
        status = JobStatus(status)
        fields = self._fields(job_id, samples_total, family, extra)
        fields["status"] = JobStatus.QUEUED.value if status in ACTIVE else status.value
        keys = [self._k(job_id), self._k(job_id, "units"), self._k(job_id, "owners"), f"{self.prefix}:jobs",
                f"{self.prefix}:active"]
        pairs = [x for p, state in owners.items() for x in (p, state)]
        args = [self.prefix, job_id, f"{time.time():.3f}", samples_total, fields["status"], len(owners), *pairs,
                *_flat(fields)]
        return bool(self._scripts["restore"](keys=keys, args=args))

    def get(self, job_id: str) -> dict | None:
        return self.get_many([job_id])[0]

    def get_many(self, job_ids: list[str]) -> list[dict | None]:
        """The records of ``job_ids`` (None for unknown ones) in one round trip; each carries its
        ``owners`` (principal -> handle state)."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self._k(job_id))
            pipe.hvals(self._k(job_id, "progress"))
            pipe.scard(self._k(job_id, "done"))
            pipe.exists(self._k(job_id, "cancel"))
            pipe.hgetall(self._k(job_id, "owners"))
        replies = pipe.execute()
        out = []
        for j in range(len(job_ids)):
            rec, progress, done, cancel, owners = replies[5 * j : 5 * j + 5]
            if not rec:
                out.append(None)
                continue
            for key in ("samples_total", "shards_total"):
                rec[key] = int(rec.get(key) or 0)
            rec["summary"] = json.loads(rec.get("summary") or "{}")
            rec["samples_done"] = sum(int(v) for v in progress)
            rec["shards_done"] = int(done)
            rec["cancel_requested"] = bool(cancel)
            rec["owners"] = owners
            out.append(rec)
        return out

    def exists(self, job_id: str) -> bool:
        return bool(self.r.exists(self._k(job_id)))

    def ping(self) -> None:
        """Raise ``redis.RedisError`` unless Redis answers."""
        self.r.ping()

    def update(self, job_id: str, **fields) -> None:
        fields["updated"] = now_iso()
        self.r.hset(self._k(job_id), mapping=dict(zip(*[iter(_flat(fields))] * 2)))

    def set_status(self, job_id: str, status: JobStatus, *, force: bool = False, **fields) -> bool:
        """Move to ``status`` unless the job is already terminal (``force`` overrides)."""
        status = JobStatus(status)
        fields["updated"] = now_iso()
        if status.terminal:
            fields.setdefault("finished", now_iso())
        return bool(self._scripts["status"](keys=[self._k(job_id)],
                                            args=[status.value, "1" if force else "0", self.prefix, job_id,
                                                  *_flat(fields)]))

    def ids(self, *, start: int = 0, count: int = 100, principal: str | None = None) -> list[str]:
        """Job ids, newest first: every job, or ``principal``'s handles."""
        key = f"{self.prefix}:jobs" if principal is None else self._owner(principal, "jobs")
        return list(self.r.zrevrange(key, start, start + count - 1))

    def active_ids(self) -> list[str]:
        return list(self.r.smembers(f"{self.prefix}:active"))

    def delete(self, job_id: str) -> None:
        """Drop every key of the job (its handles included)."""
        owners = self.r.hkeys(self._k(job_id, "owners"))
        leases = list(self.r.scan_iter(match=self._k(job_id, "lease:*"), count=1000))
        pipe = self.r.pipeline()
        pipe.delete(*[self._k(job_id, p) for p in ("", "progress", "done", "attempts", "cancel", "units", "owners")],
                    *leases)
        pipe.zrem(f"{self.prefix}:jobs", job_id)
        pipe.srem(f"{self.prefix}:active", job_id)
        for p in owners:
            pipe.zrem(self._owner(p, "jobs"), job_id)
            pipe.zrem(self._owner(p, "active"), job_id)
        pipe.execute()

    # ----- owners ------------------------------------------------------------------------------
    def cancel(self, job_id: str, principal: str, *, admin: bool) -> tuple[bool, bool]:
        """``principal`` cancels its handle; returns ``(found, job cancelled now)``.  The job stops
        when no active handle is left (at once for an admin)."""
        found, cancelled = self._scripts["cancel"](
            keys=[self._k(job_id), self._k(job_id, "owners"), self._k(job_id, "cancel")],
            args=[self.prefix, job_id, principal, "1" if admin else "0", now_iso()])
        return bool(found), bool(cancelled)

    def drop_handle(self, job_id: str, principal: str) -> int:
        """Remove ``principal``'s handle; the number of handles left (-1 if it had none)."""
        return int(self._scripts["drop"](keys=[self._k(job_id, "owners")], args=[self.prefix, job_id, principal]))

    def quota_use(self, principal: str) -> tuple[int, float]:
        """``(active jobs, samples in flight)`` of ``principal``."""
        scores = self.r.zrange(self._owner(principal, "active"), 0, -1, withscores=True)
        return len(scores), sum(s for _, s in scores)

    # ----- units (what must still run) ---------------------------------------------------------
    def units(self, job_id: str) -> dict[str, Unit]:
        return {name: Unit.parse(name, raw) for name, raw in self.r.hgetall(self._k(job_id, "units")).items()}

    def set_units(self, job_id: str, units: list[Unit], *, drop: tuple[str, ...] = ()) -> None:
        pipe = self.r.pipeline()
        if units:
            pipe.hset(self._k(job_id, "units"), mapping={u.name: u.encode() for u in units})
        if drop:
            pipe.hdel(self._k(job_id, "units"), *drop)
        pipe.execute()

    def defer(self, job_id: str, unit: str, *, due: float, retries: int, value: str) -> None:
        """A delivery ends on a transient error: the unit is due again at ``due`` (the sweep sends it),
        its lease is released and the attempt does not count as a crash."""
        pipe = self.r.pipeline()
        pipe.hset(self._k(job_id, "units"), unit, Unit(unit, "retry", due, retries).encode())
        pipe.hincrby(self._k(job_id, "attempts"), unit, -1)
        pipe.execute()
        self.release_lease(job_id, unit, value)

    # ----- progress and fan-in ------------------------------------------------------------------
    def progress(self, job_id: str, shard: str, samples: int) -> None:
        self.r.hset(self._k(job_id, "progress"), shard, samples)

    def shard_done(self, job_id: str, shard: str, samples: int, shards_total: int, seconds: float = 0.0,
                   unknowns: int = 0) -> bool:
        """Record a finished shard; True exactly once, for the call that completed the set (that call
        also registers the ``@finalize`` unit).  Newly finished shards count into the metrics."""
        return bool(self._scripts["done"](
            keys=[self._k(job_id, "done"), f"{self.prefix}:metrics", self._k(job_id, "units"),
                  self._k(job_id, "progress")],
            args=[shard, shards_total, samples, float(seconds), unknowns, f"{time.time():.3f}"]))

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
    def put_batch(self, batch_id: str, owner: str, job_ids: list[str]) -> None:
        self.r.set(f"{self.prefix}:batch:{batch_id}", json.dumps({"owner": owner, "jobs": job_ids}))

    def batch(self, batch_id: str) -> dict | None:
        """``{"owner", "jobs"}`` of a batch, or None for an unknown batch."""
        raw = self.r.get(f"{self.prefix}:batch:{batch_id}")
        return None if raw is None else json.loads(raw)

    # ----- cancellation ------------------------------------------------------------------------
    def cancelled(self, job_id: str) -> bool:
        return bool(self.r.exists(self._k(job_id, "cancel")))

    # ----- poison shards and leases -------------------------------------------------------------
    def acquire(self, job_id: str, unit: str, value: str, ttl: float) -> tuple[int, int]:
        """Take ``unit``'s lease and mark it started: ``(attempt, retries so far)``; attempt 0 if a live
        delivery holds it, -1 if the job is unknown or over.  A lease held by a dead process of this
        host is taken over at once (the redelivery after a killed pool child need not wait)."""
        key = self._k(job_id, f"lease:{unit}")
        holder = self.r.get(key)
        steal = holder if holder is not None and holder_is_dead(holder) else ""
        attempt, retries = self._scripts["acquire"](
            keys=[key, self._k(job_id, "units"), self._k(job_id), self._k(job_id, "attempts")],
            args=[value, int(ttl * 1000), unit, steal, f"{time.time():.3f}"])
        return int(attempt), int(retries)

    def renew_lease(self, job_id: str, unit: str, value: str, ttl: float) -> bool:
        """Extend our lease (taking it again if it vanished); False when another delivery holds it."""
        return bool(self._scripts["renew"](keys=[self._k(job_id, f"lease:{unit}")], args=[value, int(ttl * 1000)]))

    def release_lease(self, job_id: str, unit: str, value: str) -> None:
        self._scripts["release"](keys=[self._k(job_id, f"lease:{unit}")], args=[value])

    def leased(self, job_id: str, units: list[str]) -> dict[str, bool]:
        if not units:
            return {}
        values = self.r.mget([self._k(job_id, f"lease:{u}") for u in units])
        return {u: v is not None for u, v in zip(units, values)}

    # ----- deployment-wide ---------------------------------------------------------------------
    def lead(self, value: str, ttl: float) -> bool:
        """Take or extend the sweep's leader lock."""
        return bool(self._scripts["lead"](keys=[f"{self.prefix}:sweeper"], args=[value, int(ttl * 1000)]))

    def epoch(self) -> str | None:
        return self.r.get(f"{self.prefix}:epoch")

    def set_epoch(self) -> str:
        value = uuid.uuid4().hex
        self.r.set(f"{self.prefix}:epoch", value, nx=True)
        return self.r.get(f"{self.prefix}:epoch") or value
