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
from pdeforge.solvers.fields import SAMPLING, SAMPLING_VERSIONS
from pdeforge.solvers.options import SolverOptions
from pdeforge.solvers.timestepping import TimeSpec

#: fields of FamilySpec that live in ``grid`` rather than ``params``
GRID_FIELDS = ("n", "dim")
#: fields of FamilySpec that are not family parameters (``time`` has its own block, ``sampling`` is top level)
NOT_PARAMS = (*GRID_FIELDS, "sampling")
#: at most this many resolutions in one paired dataset
MAX_RESOLUTIONS = 4
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


class GridBase(BaseModel):
    """The computational grid: ``n`` cells per axis in ``dim`` dimensions of the unit cube; with
    ``resolutions``, a paired dataset holding every sample at each of them (``n`` = the finest)."""

    model_config = STRICT
    resolutions: list[int] | None = Field(
        None, min_length=2, max_length=MAX_RESOLUTIONS,
        description="paired dataset: the same samples solved at each of these cells-per-axis, ascending "
                    "(n defaults to, and must be, the largest)")

    @model_validator(mode="before")
    @classmethod
    def _finest_is_n(cls, data):
        if isinstance(data, dict) and data.get("resolutions") and "n" not in data:
            try:
                return {**data, "n": max(int(r) for r in data["resolutions"])}
            except (TypeError, ValueError):
                return data
        return data

    @model_validator(mode="after")
    def _ascending(self):
        res = self.resolutions
        if res is not None:
            if any(b <= a for a, b in zip(res, res[1:])):
                raise ValueError(f"grid.resolutions={res} is not allowed; allowed: strictly ascending cells per axis")
            if res[-1] != self.n:  # type: ignore[attr-defined]
                raise ValueError(f"grid.n={self.n} is not allowed with resolutions {res}; "  # type: ignore[attr-defined]
                                 f"allowed: n = {res[-1]} (the finest resolution) or no n")
        return self


class JobBase(BaseModel):
    model_config = STRICT
    samples: int = Field(1000, ge=1, le=10_000_000, description="number of samples in the dataset")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="dataset seed: sample i is a pure function of (seed, i)")
    sampling: Literal[SAMPLING_VERSIONS] = Field(  # type: ignore[valid-type]
        SAMPLING, description="how random draws become grid values: 2 = one continuum field per sample, the same "
                              "instance at every resolution (point values of its truncation at the cell centres); "
                              "1 = pdeforge 0.1's per-grid draws (regenerates datasets made before 0.2)")
    split: Split = Field(default_factory=Split)
    solver: SolverModel = Field(default_factory=SolverModel)  # type: ignore[valid-type]
    output: Output = Field(default_factory=Output)

    # ----- derived objects -------------------------------------------------
    def family_spec(self) -> FamilySpec:
        family = FAMILIES[self.family]  # type: ignore[attr-defined]
        block = getattr(self, "time", None)
        time = None if block is None else to_dataclass(TimeSpec, block)
        return to_dataclass(family.Spec, self.params, n=self.grid.n, dim=self.grid.dim, time=time,  # type: ignore[attr-defined]
                            sampling=self.sampling)

    @property
    def resolutions(self) -> list[int]:
        """Cells per axis of every resolution held (one, unless the dataset is paired), ascending."""
        return list(self.grid.resolutions or [self.grid.n])  # type: ignore[attr-defined]

    @property
    def paired(self) -> bool:
        return self.grid.resolutions is not None  # type: ignore[attr-defined]

    @property
    def unknowns(self) -> int:
        """Grid cells of one sample, summed over its resolutions."""
        return sum(r ** self.grid.dim for r in self.resolutions)  # type: ignore[attr-defined]

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
        builds = [("params", self.family_spec), ("solver", self.solver_options)]
        builds += [("grid.resolutions", lambda r=r: self.family_spec().at(r)) for r in self.resolutions[:-1]]
        for where, build in builds:
            try:
                build()
            except ValueError as exc:
                text = str(exc)
                name = text.split("=", 1)[0]
                if name.startswith(("time.", "grid.")):  # already a full path
                    raise ValueError(text) from None
                if name in GRID_FIELDS:  # a grid rule (n for dim=3), of the grid or of one of its resolutions
                    raise ValueError(f"{where if where.startswith('grid.') else 'grid.n'}{text[len(name):]}"
                                     if name == "n" else f"grid.{text}") from None
                raise ValueError(f"{where}.{text}" if name.isidentifier() or "." in name else text) from None
        try:  # the one applicability rule (pdeforge.solvers.engines.refusal), as a 422 on solver.engine
            check_engine(self.solver.engine, FAMILIES[self.family], self.family_spec())  # type: ignore[attr-defined]
        except ValueError as exc:
            raise ValueError(f"solver.{exc}") from None
        return self


def _job_model(name: str) -> type[JobBase]:
    family = FAMILIES[name]
    stem = family.Spec.__name__.removesuffix("Spec")
    params = model_for(family.Spec, stem + "Params", NOT_PARAMS)
    cells = model_for(family.Spec, stem + "Cells", only=GRID_FIELDS)
    grid = create_model(stem + "Grid", __base__=GridBase, __doc__=GridBase.__doc__,
                        **{name: (f.annotation, f) for name, f in cells.model_fields.items()})
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
