"""PDE families: what can be submitted, with defaults, ranges and an example spec."""

from fastapi import APIRouter, HTTPException

from pdeforge.workers.catalog import describe_family, family_names

router = APIRouter(prefix="/v1/families", tags=["families"])


@router.get("")
def list_families() -> list[dict]:
    """Every family with its description, parameters (defaults, allowed ranges) and an example spec."""
    return [describe_family(name) for name in family_names()]


@router.get("/{name}")
def get_family(name: str) -> dict:
    """One family: description, parameter schema with defaults and ranges, example spec."""
    if name not in family_names():
        raise HTTPException(404, f"unknown family {name!r}; valid names: {', '.join(family_names())}")
    return describe_family(name)
