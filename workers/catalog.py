"""Discoverable description of every family: what a user can submit, with ranges and an example."""

from __future__ import annotations

import dataclasses
import inspect
import typing

from pdeforge.solvers.families import FAMILIES
from pdeforge.solvers.params import allowed_range

from .spec import JOB_MODELS


def family_names() -> list[str]:
    return list(FAMILIES)


def example_spec(name: str) -> dict:
    """A small, valid spec of family ``name`` with every default filled in."""
    model = JOB_MODELS[name]
    return model(family=name, samples=100, grid={"n": 64, "dim": 2}).model_dump(mode="json")


def describe_family(name: str) -> dict:
    """Summary, documentation, parameter schema (defaults and allowed ranges) and an example."""
    family = FAMILIES[name]
    model = JOB_MODELS[name]
    return {
        "name": name,
        "summary": family.summary,
        "matrix": family.capabilities(family.spec()).describe(),  # of the default spec
        "description": inspect.getdoc(inspect.getmodule(type(family))) or "",
        "parameters": model.model_fields["params"].annotation.model_json_schema(),
        "job_schema": model.model_json_schema(),
        "example": example_spec(name),
    }


def parameter_rows(name: str) -> list[tuple[str, str, str, str]]:
    """``(parameter, default, allowed, description)`` for every parameter of family ``name`` (nested
    parameters dotted, e.g. ``coefficient.grf.alpha``), read from the spec dataclasses' metadata."""
    rows: list[tuple[str, str, str, str]] = []

    def walk(cls, prefix: str, instance=None) -> None:
        """``instance``: the family's default of a nested parameter block (e.g. FNO's GRF for burgers),
        whose values are the defaults shown, not those of the block's class."""
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if "doc" not in f.metadata:
                continue
            if instance is not None:
                default = getattr(instance, f.name)
            else:
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{prefix}{f.name}.", default)
                continue
            top = cls is FAMILIES[name].Spec
            where = "grid." if top and f.name in ("n", "dim") else "" if top and f.name == "sampling" else "params."
            label = f"{where}{prefix}{f.name}" if not prefix else f"params.{prefix}{f.name}"
            rows.append((label, "(auto)" if default is None else repr(default), allowed_range(f.metadata)
                         .replace("value", f.name), f.metadata["doc"]))

    walk(FAMILIES[name].Spec, "")
    return rows
