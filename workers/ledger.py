"""What object storage keeps about *jobs* (beside their data), so that Redis may lose everything.

``jobs/{id}/state.json``              the job's last known status (``queued`` while it should run;
                                      ``succeeded``, ``failed`` or ``cancelled`` once over: a
                                      tombstone -- a cancelled job stays cancelled after a Redis loss)
``jobs/{id}/owners/{principal}.json`` one principal's handle (``active`` or ``cancelled``)
``batches/{id}.json``                 a batch's owner and job ids

Written when the state changes (submit, cancel, the end of a job); read when a job is
missing from Redis (:meth:`~pdeforge.workers.jobs.JobService.recover`) and by the recovery
sweep, which walks ``jobs/`` to find dormant jobs nobody polls.
"""

from __future__ import annotations

from collections.abc import Iterator

from . import keys
from .errors import ObjectNotFound
from .state import now_iso
from .storage import Storage


def write_state(storage: Storage, job_id: str, status: str, **fields) -> None:
    storage.put_json(keys.job_state(job_id), {"status": str(status), "updated": now_iso(), **fields})


def read_state(storage: Storage, job_id: str) -> dict | None:
    try:
        return storage.get_json(keys.job_state(job_id))
    except ObjectNotFound:
        return None


def write_owner(storage: Storage, job_id: str, principal: str, state: str) -> None:
    storage.put_json(keys.job_owner(job_id, principal), {"principal": principal, "state": state,
                                                         "updated": now_iso()})


def delete_owner(storage: Storage, job_id: str, principal: str) -> None:
    storage.delete(keys.job_owner(job_id, principal))


def read_owners(storage: Storage, job_id: str) -> dict[str, str]:
    """principal -> handle state, from the owner records."""
    out = {}
    folder = keys.job_folder(job_id) + "owners/"
    for info in storage.list(folder):
        name = info.key.removeprefix(folder).removesuffix(".json")
        try:
            out[name] = storage.get_json(info.key).get("state", "active")
        except ObjectNotFound:  # removed meanwhile
            continue
    return out


def delete_job(storage: Storage, job_id: str) -> int:
    return storage.delete_prefix(keys.job_folder(job_id))


def job_ids(storage: Storage) -> Iterator[str]:
    """Every job storage keeps a state for (each id once)."""
    for info in storage.list(keys.JOBS_ROOT):
        parts = info.key.split("/")
        if len(parts) == 3 and parts[2] == "state.json" and keys.is_id(parts[1]):
            yield parts[1]


def write_batch(storage: Storage, batch_id: str, owner: str, job_ids_: list[str]) -> None:
    storage.put_json(keys.batch_record(batch_id), {"owner": owner, "jobs": job_ids_})


def read_batch(storage: Storage, batch_id: str) -> dict | None:
    try:
        return storage.get_json(keys.batch_record(batch_id))
    except ObjectNotFound:
        return None
