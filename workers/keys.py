"""The one place that builds storage keys of a dataset.

::

    datasets/{id}/spec.json
    datasets/{id}/plan.json
    datasets/{id}/data/{split}/shard_{k:05d}.h5
    datasets/{id}/data/{split}/r{n}/shard_{k:05d}.h5   # paired datasets: one folder per resolution n
    datasets/{id}/shards/{split}/shard_{k:05d}.json   # per-shard record: sha256, bytes, solver summary
    datasets/{id}/stats.json
    datasets/{id}/README.md                           # dataset card (Hugging Face `datasets` YAML header)
    datasets/{id}/croissant.json                      # Croissant 1.0 metadata, sha256 of every file
    datasets/{id}/manifest.json                       # written last: the dataset is complete iff it exists
    jobs/{id}/state.json                              # the job's last known status (a tombstone once over)
    jobs/{id}/owners/{principal}.json                 # one principal's handle on the job
    batches/{id}.json                                 # a batch: owner and job ids
"""

from __future__ import annotations

import re

SPLITS = ("train", "valid", "test")
_ID = re.compile(r"^[0-9a-f]{16}$")


def check_id(dataset_id: str) -> str:
    if not _ID.match(dataset_id or ""):
        raise ValueError(f"dataset id {dataset_id!r} is not 16 lowercase hex digits")
    return dataset_id


def is_id(dataset_id: str) -> bool:
    """Whether ``dataset_id`` is a well-formed dataset (= job) id."""
    return isinstance(dataset_id, str) and bool(_ID.match(dataset_id))


def prefix(dataset_id: str) -> str:
    return f"datasets/{check_id(dataset_id)}/"


def spec(dataset_id: str) -> str:
    return prefix(dataset_id) + "spec.json"


def plan(dataset_id: str) -> str:
    return prefix(dataset_id) + "plan.json"


def stats(dataset_id: str) -> str:
    return prefix(dataset_id) + "stats.json"


def card(dataset_id: str) -> str:
    return prefix(dataset_id) + "README.md"


def croissant(dataset_id: str) -> str:
    return prefix(dataset_id) + "croissant.json"


def manifest(dataset_id: str) -> str:
    return prefix(dataset_id) + "manifest.json"


def shard(dataset_id: str, split: str, k: int, resolution: int | None = None) -> str:
    """Key of shard ``k`` of a split; of a paired dataset, at ``resolution`` cells per axis."""
    folder = f"data/{split}/" if resolution is None else f"data/{split}/r{resolution}/"
    return prefix(dataset_id) + f"{folder}shard_{k:05d}.h5"


def shard_record(dataset_id: str, split: str, k: int) -> str:
    return prefix(dataset_id) + f"shards/{split}/shard_{k:05d}.json"


def job_folder(dataset_id: str) -> str:
    """Everything storage keeps about the *job* of a dataset (state, owners), apart from its data."""
    return f"jobs/{check_id(dataset_id)}/"


def job_state(dataset_id: str) -> str:
    return job_folder(dataset_id) + "state.json"


def job_owner(dataset_id: str, principal: str) -> str:
    return job_folder(dataset_id) + f"owners/{principal}.json"


JOBS_ROOT = "jobs/"


def batch_record(batch_id: str) -> str:
    return f"batches/{check_id(batch_id)}.json"


def shard_name(split: str, k: int) -> str:
    """Short name of a shard used in job state, e.g. ``train/00003``."""
    return f"{split}/{k:05d}"
