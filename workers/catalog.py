"""Discoverable description of every family: what a user can submit, with ranges and an example."""

from __future__ import annotations

import inspect

from pdeforge.solvers.families import FAMILIES

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
