"""Typed records of the pipeline: the plan, its shards, and the record of a finished shard.

They are stored as JSON (``plan.json``, ``shards/{split}/shard_k.json``); ``to_json`` /
``from_json`` are the only (de)serialisers, so the stored layout is written down once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from . import keys


class _ShardJson:
    """Name and JSON form shared by the shard records (dataclasses with ``split`` and ``shard``)."""

    split: str
    shard: int

    @property
    def name(self) -> str:
        """Short name used in job state, e.g. ``train/00003``."""
        return keys.shard_name(self.split, self.shard)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict):
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclass(frozen=True)
class ShardPlan(_ShardJson):
    """One contiguous chunk of a split's solve order: solved by one task, stored as one file."""

    split: str
    shard: int
    key: str
    indices: list[int]
    engine: str


@dataclass(frozen=True)
class Plan:
    """Deterministic plan of a dataset: the solve order per split cut into shards, and the engine."""

    dataset_id: str
    samples: int
    splits: dict[str, list[ShardPlan]]
    ordering: dict[str, dict]
    engine: dict
    seconds: float = 0.0
    pdeforge_version: str = ""

    @property
    def shards_total(self) -> int:
        return sum(len(parts) for parts in self.splits.values())

    def shards(self) -> list[ShardPlan]:
        """Every shard, split by split (train, valid, test), in shard order."""
        return [s for name in keys.SPLITS for s in self.splits.get(name, [])]

    def shard(self, split: str, k: int) -> ShardPlan:
        return self.splits[split][k]

    def to_json(self) -> dict:
        return {"dataset_id": self.dataset_id, "samples": self.samples, "shards_total": self.shards_total,
                "splits": {name: [s.to_json() for s in parts] for name, parts in self.splits.items()},
                "ordering": self.ordering, "engine": self.engine, "seconds": self.seconds,
                "pdeforge_version": self.pdeforge_version}

    @classmethod
    def from_json(cls, data: dict) -> Plan:
        splits = {name: [ShardPlan.from_json(s) for s in parts] for name, parts in data["splits"].items()}
        return cls(data["dataset_id"], int(data["samples"]), splits, data.get("ordering", {}),
                   data.get("engine", {}), data.get("seconds", 0.0), data.get("pdeforge_version", ""))


@dataclass(frozen=True)
class ShardRecord(_ShardJson):
    """What a finished shard holds; written after its file, so a record always describes a complete shard."""

    split: str
    shard: int
    key: str
    bytes: int
    sha256: str
    samples: int
    x: dict
    y: dict
    first_index: int | None
    solver: dict
    stats: dict
    seconds: float
    input_names: list[str] = field(default_factory=list)
    #: paired datasets: the same samples at the coarser resolutions, ``{"64": {key, bytes, sha256, samples, x,
    #: y, solver, stats}}`` (this record's own fields describe the finest)
    companions: dict = field(default_factory=dict)
    resolution: int | None = None
