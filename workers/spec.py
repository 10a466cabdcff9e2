"""Dataset job specs: one pydantic model per family, a discriminated union on ``family``.

The models are *derived* from the frozen spec dataclasses in :mod:`solvers`
(their :func:`pdeforge.solvers.params.param` metadata gives types, defaults, ranges and
descriptions), so ranges are stated once and appear in the OpenAPI schema.  Cross-field
rules that the dataclasses check (e.g. Helmholtz resolution) surface as
validation errors on the ``params`` field.

A spec's canonical JSON (defaults filled in, keys sorted) names its dataset together
with the dataset format version: ``dataset_id = sha256("pdeforge-dataset/v<format>\n" +
canonical)[:16]``, so the same spec always names the same dataset, and a spec
submitted after a format change names a new one instead of an old-layout dataset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from functools import lru_cache
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model, model_validator

from pdeforge.solvers.engines import check_engine
from pdeforge.solvers.families import FAMILIES, FamilySpec
from pdeforge.solvers.families.base import OPTIONAL_TIME, STEADY, TRANSIENT
from pdeforge.solvers.options import SolverOptions
from pdeforge.solvers.timestepping import TimeSpec

#: fields of FamilySpec that live in ``grid`` rather than ``params``
GRID_FIELDS = ("n", "dim")
STRICT = ConfigDict(extra="forbid", frozen=True)


def _annotation(tp: Any, meta: dict) -> Any:
    if meta.get("choices") is not None:
        return Literal[meta["choices"]]
    return tp


@lru_cache(maxsize=None)
def model_for(dc_type: type, name: str, exclude: tuple[str, ...] = (), only: tuple[str, ...] | None = None,
              doc: str | None = None) -> type[BaseModel]:
    """A strict pydantic model mirroring the :func:`param` fields of dataclass ``dc_type`` (all but
    ``exclude``, or ``only`` those)."""
    hints = typing.get_type_hints(dc_type)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(dc_type):
        if f.name in exclude or "doc" not in f.metadata or (only is not None and f.name not in only):
            continue
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(hints[f.name]):
            sub = model_for(hints[f.name], name + f.name.title().replace("_", ""))
            value = dataclasses.asdict(default)
            fields[f.name] = (sub, Field(default_factory=lambda s=sub, v=value: s.model_validate(v),
                                         description=meta["doc"]))
            continue
        bounds = {k: meta[k] for k in ("ge", "gt", "le", "lt") if meta.get(k) is not None}
        fields[f.name] = (_annotation(hints[f.name], meta), Field(default, description=meta["doc"], **bounds))
    return create_model(name, __config__=STRICT, __doc__=doc, **fields)


def to_dataclass(dc_type: type, model: BaseModel, **extra) -> Any:
    """Rebuild the solver dataclass from a validated model (runs its cross-field checks)."""
    hints = typing.get_type_hints(dc_type)
    kwargs = dict(extra)
    for name in type(model).model_fields:
        value = getattr(model, name)
        kwargs[name] = to_dataclass(hints[name], value) if isinstance(value, BaseModel) else value
    return dc_type(**kwargs)


class Split(BaseModel):
    """Fractions of the samples in each split (they must add up to 1)."""

    model_config = STRICT
    train: float = Field(0.8, ge=0.0, le=1.0)
    valid: float = Field(0.1, ge=0.0, le=1.0)
    test: float = Field(0.1, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _sums_to_one(self) -> Split:
        total = self.train + self.valid + self.test
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"train + valid + test = {total:g}; allowed: exactly 1")
        return self


#: the dataset (shard) format version; part of every dataset id (see module docstring)
FORMAT_VERSION = 2


class Output(BaseModel):
    """How the dataset is written."""

    model_config = STRICT
    dtype: Literal["float32", "float64"] = Field(
        "float32", description="storage precision of x and y; the inputs are rounded to it before the system is "
                               "assembled, the system is solved in float64 and y rounded to it")
    shard_samples: int = Field(100, ge=1, le=100_000, description="samples per HDF5 shard (at most)")
    compression: Literal["none", "gzip", "blosc"] = Field(
        "none", description="HDF5 filter of x, y and inputs/: gzip (level 4 + shuffle, any HDF5 reader) or "
                            "blosc (zstd + shuffle; readers need `import hdf5plugin`)")
    complex: Literal["complex", "real_imag"] = Field(
        "complex", description="complex solutions: complex dtype (HDF5 compound r/i) or two real channels")


SolverModel = model_for(SolverOptions, "Solver")


TimeModel = model_for(TimeSpec, "Time", doc="Time-dependent families: interval, step, stored frames, scheme.")


class JobBase(BaseModel):
    model_config = STRICT
    samples: int = Field(1000, ge=1, le=10_000_000, description="number of samples in the dataset")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="dataset seed: sample i is a pure function of (seed, i)")
    split: Split = Field(default_factory=Split)
    solver: SolverModel = Field(default_factory=SolverModel)  # type: ignore[valid-type]
    output: Output = Field(default_factory=Output)

    # ----- derived objects -------------------------------------------------
    def family_spec(self) -> FamilySpec:
        family = FAMILIES[self.family]  # type: ignore[attr-defined]
        block = getattr(self, "time", None)
        time = None if block is None else to_dataclass(TimeSpec, block)
        return to_dataclass(family.Spec, self.params, n=self.grid.n, dim=self.grid.dim, time=time)  # type: ignore[attr-defined]

    def solver_options(self) -> SolverOptions:
        return to_dataclass(SolverOptions, self.solver)

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    @property
    def dataset_id(self) -> str:
        text = f"pdeforge-dataset/v{FORMAT_VERSION}\n" + self.canonical_json()
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @model_validator(mode="before")
    @classmethod
    def _time_block(cls, data):
        if isinstance(data, dict) and "time" in data and "time" not in cls.model_fields:
            with_time = ", ".join(n for n, f in FAMILIES.items() if f.time_dependence != STEADY)
            raise ValueError(f"time=<block> is not allowed for {data.get('family')}, a steady family; allowed: no "
                             f"time block (families that take one: {with_time})")
        return data

    @model_validator(mode="after")
    def _consistent(self):
        # cross-field rules of the family and solver; the message names the full field path
        for where, build in (("params", self.family_spec), ("solver", self.solver_options)):
            try:
                build()
            except ValueError as exc:
                text = str(exc)
                name = text.split("=", 1)[0]
                if name.startswith(("time.", "grid.")):  # already a full path
                    raise ValueError(text) from None
                raise ValueError(f"{where}.{text}" if name.isidentifier() or "." in name else text) from None
        try:  # the one applicability rule (pdeforge.solvers.engines.refusal), as a 422 on solver.engine
            check_engine(self.solver.engine, FAMILIES[self.family], self.family_spec())  # type: ignore[attr-defined]
        except ValueError as exc:
            raise ValueError(f"solver.{exc}") from None
        return self


def _job_model(name: str) -> type[JobBase]:
    family = FAMILIES[name]
    stem = family.Spec.__name__.removesuffix("Spec")
    params = model_for(family.Spec, stem + "Params", GRID_FIELDS)
    grid = model_for(family.Spec, stem + "Grid", only=GRID_FIELDS,
                     doc="The computational grid: ``n`` cells per axis in ``dim`` dimensions of the unit cube.")
    title = "".join(p.title() for p in name.split("_")) + "Job"
    fields = {"family": (Literal[name], Field(description="PDE family")),
              "grid": (grid, Field(default_factory=grid)),
              "params": (params, Field(default_factory=params, description="family parameters"))}
    if family.time_dependence == TRANSIENT:
        default = dataclasses.asdict(family.default_time)
        fields["time"] = (TimeModel, Field(default_factory=lambda v=default: TimeModel.model_validate(v),
                                           description="time interval, step, stored frames and scheme"))
    elif family.time_dependence == OPTIONAL_TIME:
        fields["time"] = (TimeModel | None, Field(None, description="makes the family transient: time interval, "
                                                                   "step, stored frames and scheme"))
    return create_model(title, __base__=JobBase, __doc__=f"A dataset of the `{name}` family: {family.summary}.",
                        **fields)


JOB_MODELS: dict[str, type[JobBase]] = {name: _job_model(name) for name in FAMILIES}
JobSpec = Annotated[Union[tuple(JOB_MODELS.values())], Field(discriminator="family")]  # type: ignore[valid-type]
_ADAPTER = TypeAdapter(JobSpec)


def parse_spec(data: dict | str | bytes) -> JobBase:
    """Validate a spec given as a dict or JSON text (raises ``pydantic.ValidationError``)."""
    if isinstance(data, (str, bytes)):
        return _ADAPTER.validate_json(data)
    return _ADAPTER.validate_python(data)
