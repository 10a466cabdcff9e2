"""The engine registry and the one applicability rule.

Engines join ``ENGINES`` with :func:`register` when their module is imported; nothing
here imports an engine or the pipeline above them.  :func:`refusal` answers "does
engine E apply to this spec, and if not, why" from the engine's ``requires`` and the
family's :class:`~pdeforge.solvers.capabilities.Capabilities`; ``auto``, spec validation (the
API's 422 text), :func:`pdeforge.solvers.generate.generate` (through the engine constructor)
and the benchmarks all ask it.
"""

from __future__ import annotations

from ..capabilities import Capabilities
from ..registry import Registry

#: the pilot that picks an engine per job; not an engine class itself
AUTO = "auto"

ENGINES: Registry = Registry("engine")


def register(cls):
    """Class decorator: add an engine class to ``ENGINES`` under ``cls.name``."""
    ENGINES.register(cls.name, cls)
    return cls


def refusal(name: str, caps: Capabilities) -> str | None:
    """None if engine ``name`` applies to systems with ``caps``, else the reason it does not."""
    if name == AUTO:
        return None if applicable_engines(caps) else "no engine applies"
    for req in ENGINES[name].requires:
        if not req.holds(caps):
            return f"it needs {req.needs}"
    return None


def applicable_engines(caps: Capabilities) -> list[str]:
    """Names of the registered engines that apply to ``caps``, in registry order."""
    return [name for name in ENGINES if refusal(name, caps) is None]


def check_engine(name: str, family, spec) -> None:
    """Raise ``ValueError`` (naming the reason and the engines that do apply) unless ``name`` applies."""
    caps = family.capabilities(spec)
    why = refusal(name, caps)
    if why is not None:
        allowed = ", ".join([AUTO, *applicable_engines(caps)])
        raise ValueError(f"engine={name!r} does not apply to this {family.name} spec ({caps.describe()}): "
                         f"{why}; allowed: {allowed}")
