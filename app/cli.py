"""The ``pdeforge`` command line."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

cli = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="PDEForge: fast, verified PDE datasets for neural operators.")


def _version(value: bool) -> None:
    if value:
        from pdeforge import __version__

        typer.echo(f"pdeforge {__version__}")
        raise typer.Exit()


@cli.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="print the version and exit")] = False) -> None:
    """PDEForge: fast, verified PDE datasets for neural operators."""


def _load_spec(path: Path):
    from pydantic import ValidationError

    from pdeforge.workers.spec import parse_spec
    from pdeforge.workers.validation import validation_details

    try:
        return parse_spec(path.read_text())
    except ValidationError as exc:
        typer.echo(f"error: invalid spec {path}", err=True)
        for err in validation_details(exc.errors()):
            typer.echo(f"  {_field_error(err)}", err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:  # not JSON at all
        typer.echo(f"error: cannot read {path} as a spec: {exc}", err=True)
        raise typer.Exit(2) from None


@cli.command()
def generate(
    spec: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="dataset spec (JSON)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
    workers: Annotated[Optional[int], typer.Option("--workers", "-w", min=1, help="processes (default: cores)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Generate a dataset locally (no server) into OUT: the same files `pdeforge download` writes."""
    from pdeforge.workers.standalone import generate_local, progress_printer

    job = _load_spec(spec)
    bar = None if quiet else progress_printer(f"dataset {job.dataset_id}")
    try:
        manifest = generate_local(job, out, workers=workers, on_progress=bar)
    finally:
        if bar is not None:
            bar.close()
    s = manifest["solver"]
    typer.echo(f"dataset {job.dataset_id}: {manifest['samples']} samples in "
               f"{sum(1 for f in manifest['files'] if 'shard' in f)} shards in {out.resolve()}")
    typer.echo(f"  engines {s['engines']}, mean iterations {s['mean_iterations']:.1f}, "
               f"max residual {s['residual_max']:.2e}, {s['seconds_per_sample'] * 1e3:.1f} ms/sample/core")


@cli.command()
def families(
    name: Annotated[Optional[str], typer.Argument(help="show one family's parameters")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the full description with the job's JSON schema")] = False,
) -> None:
    """List the PDE families, or show one family's parameters with defaults and allowed ranges."""
    from pdeforge.workers.catalog import describe_family, family_names, parameter_rows

    if name is None:
        for fam in family_names():
            d = describe_family(fam)
            typer.echo(f"{fam:22s} {d['summary']}")
        return
    if name not in family_names():
        typer.echo(f"error: unknown family {name!r}; valid names: {', '.join(family_names())}", err=True)
        raise typer.Exit(2)
    d = describe_family(name)
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    typer.echo(f"{name}: {d['summary']}\nmatrix (default spec): {d['matrix']}\n")
    rows = [("parameter", "default", "allowed", "meaning"), *parameter_rows(name)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
    typer.echo(f"\nexample spec: pdeforge families {name} --json (key 'example'); every field has a default.")


@cli.command()
def export(
    dataset: Annotated[Path, typer.Argument(exists=True, file_okay=False, metavar="DATASET",
                                            help="a dataset folder (from `pdeforge download` or `generate --out`)")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="neuralop (.pt), pdebench (HDF5) or zarr")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
    name: Annotated[Optional[str], typer.Option(help="file name stem (default pdeforge_<family>_<id>)")] = None,
    resolution: Annotated[Optional[int], typer.Option(help="paired datasets: only this resolution (default: all)")] = None,
) -> None:
    """Export a downloaded dataset for other tools: neuraloperator .pt, PDEBench-style HDF5, Zarr."""
    from pdeforge.workers.export import FORMATS, export as run_export

    if fmt not in FORMATS:
        typer.echo(f"error: --format {fmt!r} is not allowed; allowed: {', '.join(FORMATS)}", err=True)
        raise typer.Exit(2)
    try:
        files = run_export(dataset, fmt, out, name=name, resolution=resolution)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for path in files:
        typer.echo(f"wrote {path}")


@cli.command()
def worker(
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", "-c", min=1,
                                                       help="processes (default: cores)")] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "info",
) -> None:
    """Run a Celery worker (scale out by starting more, on any machine sharing broker and storage)."""
    from pdeforge.workers.config import get_settings

    s = get_settings()
    if not s.broker_url:
        typer.echo("PDEFORGE_BROKER_URL is not set (or use `pdeforge serve` for the embedded stack)", err=True)
        raise typer.Exit(2)
    from pdeforge.workers.celery_app import app

    argv = ["worker", "-Q", s.queue, "--loglevel", loglevel, "-c", str(concurrency or os.cpu_count() or 1)]
    app.worker_main(argv)


# ----------------------------------------------------------------------------- server
@cli.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="bind address (default PDEFORGE_API_HOST, 127.0.0.1)")] = None,
    port: Annotated[Optional[int], typer.Option(help="port (default PDEFORGE_API_PORT, 8000)")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", "-w", min=1,
                                                   help="worker processes (default: cores)")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="storage folder (default ./pdeforge-data)")] = None,
    submit: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False,
                                                   help="submit this spec once the service is ready")] = None,
) -> None:
    """Run the whole service on this machine: API, workers and (if no broker is set) a bundled Redis."""
    from pdeforge.app.serve import serve as run_stack
    from pdeforge.workers.config import get_settings

    s = get_settings()
    code = run_stack(s, host=host or s.api_host, port=port or s.api_port,
                     workers=workers or os.cpu_count() or 1, data_dir=data_dir or s.data_dir,
                     log=lambda msg: typer.echo(f"pdeforge serve: {msg}", err=True), submit=submit)
    raise typer.Exit(code)



# ----------------------------------------------------------------------------- API client
# Commands that talk to a running server through pdeforge.app.client.PDEForgeClient. HTTP errors
# print the server's detail and field errors to stderr and exit 2 for a rejected request
# (404, 413, 422) or 1 otherwise; an unreachable server exits 1 naming the URL.

UrlOption = Annotated[Optional[str], typer.Option(
    "--url", envvar="PDEFORGE_URL", show_default=False,
    help="API base URL (default http://127.0.0.1:8000)")]
TokenOption = Annotated[Optional[str], typer.Option(
    "--token", envvar="PDEFORGE_TOKEN", show_default=False, help="bearer token of the API")]

_USAGE_STATUSES = (404, 413, 422)


@contextmanager
def _api(url: Optional[str], token: Optional[str]):
    """A client for the command; API errors become messages on stderr and exit codes."""
    from pdeforge.app.client import (DownloadError, PDEForgeClient, PDEForgeConnectionError,
                            PDEForgeHTTPError)

    client = PDEForgeClient(url, token)
    try:
        yield client
    except PDEForgeHTTPError as exc:
        # a 422's detail already lists every field error: print the list once, one per line
        header = "invalid request" if exc.status == 422 and exc.errors else exc.detail
        typer.echo(f"error: {header} (HTTP {exc.status})", err=True)
        for err in exc.errors:
            typer.echo(f"  {_field_error(err, exc.detail)}", err=True)
        if exc.status == 401:
            typer.echo("  the server requires a token: pass --token or set PDEFORGE_TOKEN", err=True)
        raise typer.Exit(2 if exc.status in _USAGE_STATUSES else 1) from None
    except PDEForgeConnectionError as exc:
        typer.echo(f"error: cannot reach the PDEForge API at {client.base_url} ({exc.reason}); "
                   "is the server running? (--url or PDEFORGE_URL)", err=True)
        raise typer.Exit(1) from None
    except DownloadError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        client.close()


def _field_error(err: dict, detail: str = "") -> str:
    message = err.get("message") or ""
    text = f"{err.get('field') or 'body'}: {'' if message == detail else message}".rstrip(": ")
    extra = []
    if "value" in err:
        extra.append(f"got {err['value']!r}")
    if err.get("allowed"):
        extra.append(f"allowed: {err['allowed']}")
    if err.get("limit") is not None:
        extra.append(f"limit: {err['limit']}")
    return text + (f" ({'; '.join(extra)})" if extra else "")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        typer.echo(f"error: cannot read {path} as JSON: {exc}", err=True)
        raise typer.Exit(2) from None


def _progress_line(p: dict) -> str:
    return (f"{p['samples_done']}/{p['samples_total']} samples ({100 * p['fraction']:.0f}%), "
            f"shards {p['shards_done']}/{p['shards_total']}")


def _solver_line(s: Optional[dict]) -> Optional[str]:
    if not s:
        return None
    parts = []
    if s.get("mean_iterations") is not None:
        parts.append(f"mean iterations {s['mean_iterations']:.1f} (max {s.get('max_iterations')})")
    if s.get("mean_matvecs") is not None:
        parts.append(f"mean matvecs {s['mean_matvecs']:.1f}")
    if s.get("residual_max") is not None:
        parts.append(f"max residual {s['residual_max']:.2e}")
    if s.get("seconds_per_sample") is not None:
        parts.append(f"{s['seconds_per_sample'] * 1e3:.1f} ms/sample/core")
    if s.get("engines"):
        parts.append("engines " + ", ".join(f"{k} {v}" for k, v in s["engines"].items()))
    if s.get("fallbacks"):
        parts.append(f"fallbacks {s['fallbacks']}")
    if s.get("unconverged"):
        parts.append(f"UNCONVERGED {s['unconverged']}")
    return ", ".join(parts)


def _job_summary(job: dict) -> list[str]:
    lines = [f"job {job['id']}  {job['family']}  {job['status']}",
             f"  progress  {_progress_line(job['progress'])}"]
    times = [f"created {job['created']}"]
    if job.get("started"):
        times.append(f"started {job['started']}")
    if job.get("finished"):
        times.append(f"finished {job['finished']}")
    lines.append("  time      " + ", ".join(times))
    if job.get("elapsed_seconds") is not None:
        rate = f", {job['throughput']:.2f} samples/s" if job.get("throughput") else ""
        lines.append(f"  elapsed   {job['elapsed_seconds']:.1f} s{rate}")
    solver = _solver_line(job.get("solver"))
    if solver:
        lines.append(f"  solver    {solver}")
    if job.get("ordering"):
        lines.append("  ordering  " + ", ".join(f"{split} {o.get('method')}" for split, o in job["ordering"].items()
                                                if isinstance(o, dict)))
    if job.get("error"):
        lines.append(f"  error     {job['error']}")
    return lines


def _jobs_table(jobs: list[dict]) -> list[str]:
    rows = [("ID", "STATUS", "FAMILY", "SAMPLES", "CREATED")]
    for j in jobs:
        p = j["progress"]
        rows.append((j["id"], j["status"], j["family"],
                     f"{p['samples_done']}/{p['samples_total']} ({100 * p['fraction']:.0f}%)", j["created"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _wait_with_bar(wait, ident: str, timeout: Optional[float]) -> dict:
    """Poll until the job (or batch) ends, with a tqdm bar of samples done (rate, ETA)."""
    from tqdm import tqdm

    bar = tqdm(total=None, unit="sample", desc=ident, smoothing=0.1, dynamic_ncols=True)

    def update(state: dict) -> None:
        p = state["progress"]
        if bar.total != p["samples_total"]:
            bar.total = p["samples_total"]
            bar.refresh()
        bar.set_postfix_str(state["status"], refresh=False)
        if p["samples_done"] > bar.n:
            bar.update(p["samples_done"] - bar.n)

    try:
        return wait(ident, timeout=timeout, on_update=update)
    except TimeoutError as exc:
        bar.close()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        bar.close()
        typer.echo(f"stopped waiting; {ident} goes on on the server (`pdeforge cancel` stops a job)", err=True)
        raise typer.Exit(130) from None
    finally:
        bar.close()


@cli.command()
def submit(
    spec: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                         help='dataset spec (JSON), or a batch {"specs": [...]}')],
    wait: Annotated[bool, typer.Option("--wait", "-w", help="follow progress until the job ends")] = False,
    timeout: Annotated[Optional[float], typer.Option(help="with --wait: give up after SECONDS", min=0)] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Submit a dataset spec (or a batch of specs) to the server; print the job id and status."""
    data = _read_json(spec)
    batch = isinstance(data, list) or (isinstance(data, dict) and "specs" in data)
    with _api(url, token) as api:
        if not batch:
            job = api.submit(data)
            typer.echo(f"job {job['id']} {job['status']}  ({job['family']}, {job['progress']['samples_total']} samples)")
            if not wait:
                return
            job = _wait_with_bar(api.wait, job["id"], timeout)
            if job["status"] != "succeeded":
                typer.echo(f"job {job['id']} {job['status']}" + (f": {job['error']}" if job.get("error") else ""),
                           err=True)
                raise typer.Exit(1)
            typer.echo("\n".join(_job_summary(job)))
            typer.echo(f"download: pdeforge download {job['id']} DIR")
            return
        specs = data if isinstance(data, list) else data["specs"]
        result = api.submit_batch(specs)
        typer.echo(f"batch {result['id']} {result['status']}  ({len(result['jobs'])} jobs)")
        for job in result["jobs"]:
            typer.echo(f"  job {job['id']} {job['status']}")
        if not wait:
            return
        result = _wait_with_bar(api.wait_batch, result["id"], timeout)
        for job in result["jobs"]:
            line = f"  job {job['id']} {job['status']}"
            typer.echo(line + (f": {job['error']}" if job.get("error") else ""),
                       err=job["status"] != "succeeded")
        if result["status"] != "succeeded":
            typer.echo(f"batch {result['id']} {result['status']}", err=True)
            raise typer.Exit(1)
        typer.echo(f"batch {result['id']} succeeded")


@cli.command()
def status(
    job_id: Annotated[Optional[str], typer.Argument(metavar="[ID]", help="a job (or batch) id; none: list jobs")] = None,
    status_filter: Annotated[Optional[str], typer.Option(
        "--status", "-s", help="list only jobs with this status (queued, running, succeeded, failed, ...)")] = None,
    limit: Annotated[int, typer.Option(min=0, help="list at most N jobs (0: all)")] = 50,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Show one job (progress, timings, solver summary) or a table of jobs, newest first."""
    from pdeforge.app.client import PDEForgeHTTPError

    with _api(url, token) as api:
        if job_id is None:
            jobs = []
            for job in api.jobs(status=status_filter, page_size=min(max(limit, 1), 200) if limit else 200):
                jobs.append(job)
                if limit and len(jobs) >= limit:
                    break
            if not jobs:
                typer.echo("no jobs" + (f" with status {status_filter}" if status_filter else ""))
                return
            typer.echo("\n".join(_jobs_table(jobs)))
            return
        try:
            job = api.job(job_id)
        except PDEForgeHTTPError as exc:
            if exc.status != 404:
                raise
            try:  # job and batch ids share a shape: a batch id is also accepted
                batch = api.batch(job_id)
            except PDEForgeHTTPError:
                raise exc from None
            typer.echo(f"batch {batch['id']}  {batch['status']}  {_progress_line(batch['progress'])}")
            typer.echo("\n".join(_jobs_table(batch["jobs"])))
            return
        typer.echo("\n".join(_job_summary(job)))


@cli.command()
def download(
    dataset_id: Annotated[str, typer.Argument(metavar="ID", help="job / dataset id")],
    dest: Annotated[Path, typer.Argument(metavar="DIR", file_okay=False, help="destination folder")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Download a finished dataset into DIR (sha256-verified; interrupted downloads resume)."""
    from tqdm import tqdm

    bars: dict = {}

    def progress(path: str, done: int, total: int) -> None:
        bar = bars.get(path)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[path] = tqdm(total=total, initial=done, desc=path, unit="B", unit_scale=True,
                                    unit_divisor=1024, leave=True, dynamic_ncols=True)
        if done > bar.n:
            bar.update(done - bar.n)

    try:
        with _api(url, token) as api:
            folder = api.download(dataset_id, dest, on_progress=None if quiet else progress)
            manifest = json.loads((folder / "manifest.json").read_text())
    finally:
        for bar in bars.values():
            bar.close()
    size = sum(f["bytes"] for f in manifest["files"])
    typer.echo(f"dataset {dataset_id}: {manifest['samples']} samples, {len(manifest['files'])} files, "
               f"{size / 2**20:.1f} MiB, sha256 verified, in {folder.resolve()}")


@cli.command()
def preview(
    dataset_id: Annotated[str, typer.Argument(metavar="ID", help="job / dataset id")],
    index: Annotated[int, typer.Argument(metavar="INDEX", min=0, help="global sample index")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="PNG file (default sample_<ID>_<INDEX>.png)")] = None,
    resolution: Annotated[Optional[int], typer.Option(help="paired datasets: which resolution (default: the finest)")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Save a PNG preview of one sample (inputs and solution side by side) from the server."""
    with _api(url, token) as api:
        png = api.sample(dataset_id, index, format="png", resolution=resolution)
    path = out or Path(f"sample_{dataset_id}_{index}.png")
    path.write_bytes(png)
    typer.echo(f"wrote {path} ({len(png)} bytes)")


@cli.command()
def cancel(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="job id")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Cancel a job (running shards stop within a sample; finished shards are kept)."""
    with _api(url, token) as api:
        job = api.cancel(job_id)
    note = "" if job["status"] == "cancelled" else " (already finished; nothing to cancel)"
    typer.echo(f"job {job['id']} {job['status']}{note}")


def main() -> None:
    from pdeforge.solvers.threads import single_threaded_blas

    single_threaded_blas()  # one BLAS thread per process, for this one and every child it starts
    cli(prog_name="pdeforge")


if __name__ == "__main__":
    sys.exit(main())
