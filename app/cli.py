"""The ``pdeforge`` command line."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Optional  # noqa: E402

import typer  # noqa: E402

cli = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="PDEForge: fast, verified PDE datasets for neural operators.")


def _load_spec(path: Path):
    from pydantic import ValidationError

    from workers.spec import parse_spec

    try:
        return parse_spec(path.read_text())
    except ValidationError as exc:
        typer.echo(f"invalid spec {path}:", err=True)
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"][1:]) or "spec"
            typer.echo(f"  {loc}: {err['msg']} (got {err.get('input')!r})", err=True)
        raise typer.Exit(2) from None


@cli.command()
def generate(
    spec: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="dataset spec (JSON)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
    workers: Annotated[Optional[int], typer.Option("--workers", "-w", min=1, help="processes (default: cores)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Generate a dataset locally (no server): the same layout as the service, in OUT."""
    from workers.local import generate_local, progress_printer

    job = _load_spec(spec)
    bar = None if quiet else progress_printer(f"dataset {job.dataset_id}")
    try:
        manifest = generate_local(job, out, workers=workers, on_progress=bar)
    finally:
        if bar is not None:
            bar.close()
    s = manifest["solver"]
    typer.echo(f"dataset {job.dataset_id}: {manifest['samples']} samples in "
               f"{sum(1 for f in manifest['files'] if 'shard' in f)} shards under "
               f"{(out / 'datasets' / job.dataset_id).resolve()}")
    typer.echo(f"  engines {s['engines']}, mean iterations {s['mean_iterations']:.1f}, "
               f"max residual {s['residual_max']:.2e}, {s['seconds_per_sample'] * 1e3:.1f} ms/sample/core")


@cli.command()
def families(
    name: Annotated[Optional[str], typer.Argument(help="show one family's parameters")] = None,
) -> None:
    """List the PDE families (or one family's parameters, defaults and ranges)."""
    from workers.catalog import describe_family, family_names

    if name is None:
        for fam in family_names():
            d = describe_family(fam)
            typer.echo(f"{fam:22s} {d['summary']}")
        return
    typer.echo(json.dumps(describe_family(name), indent=2))


@cli.command()
def worker(
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", "-c", min=1,
                                                       help="processes (default: cores)")] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "info",
) -> None:
    """Run a Celery worker (scale out by starting more, on any machine sharing broker and storage)."""
    from workers.config import get_settings

    s = get_settings()
    if not s.broker_url:
        typer.echo("PDEFORGE_BROKER_URL is not set (or use `pdeforge serve` for the embedded stack)", err=True)
        raise typer.Exit(2)
    from workers.celery_app import app

    argv = ["worker", "-Q", s.queue, "--loglevel", loglevel, "-c", str(concurrency or os.cpu_count() or 1)]
    app.worker_main(argv)


def main() -> None:
    cli(prog_name="pdeforge")


if __name__ == "__main__":
    sys.exit(main())
