"""Chaos at small sizes (CI): every fault of :data:`tests.chaos.harness.SCENARIOS` heals by itself.

Each scenario runs a job on a stack of its own processes (own redis-server, never the shared
one; SeaweedFS or a small tmpfs; one worker with two pool processes and its recovery sweep;
the API), injects the fault in the middle of a shard, clears it, and requires a dataset that
the independent verifier accepts -- every index exactly once, every sha256 right, every
residual recomputed within tolerance -- within 180 s of the fault clearing, with no manual
step.  The table (scenario, recovery time, samples lost, duplicates) is printed at the end
(``conftest.py``);
``python -m bench.chaos`` runs the same scenarios at full size.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from .harness import NEEDS, RECOVERY_BUDGET, SCENARIOS, ChaosStack, Row, chaos_job, make_stack, run_scenario

pytestmark = pytest.mark.timeout(400)

ROWS: list[Row] = []
_seeds = itertools.count(9000)


def _stack(kind: str, tmp_path_factory) -> Iterator[ChaosStack]:
    try:
        stack = make_stack(tmp_path_factory.mktemp(f"chaos-{kind}"), kind)
    except PermissionError as exc:
        pytest.skip(str(exc))
    try:
        stack.start_worker()
        stack.start_api()
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="module")
def s3_stack(tmp_path_factory) -> Iterator[ChaosStack]:
    yield from _stack("s3", tmp_path_factory)


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory) -> Iterator[ChaosStack]:
    yield from _stack("local", tmp_path_factory)


# the Redis without persistence last among the S3 scenarios: it wipes the stack's Redis
ORDER = ["kill -9 pool child", "kill -9 whole worker", "kill -9 redis (AOF)", "kill -9 seaweedfs", "kill -9 API",
         "kill -9 redis (no persistence)", "disk full"]
assert sorted(ORDER) == sorted(SCENARIOS)


@pytest.mark.parametrize("scenario", ORDER)
def test_fault_heals_with_a_verified_dataset(scenario, request):
    stack = request.getfixturevalue("s3_stack" if NEEDS[scenario] == "s3" else "local_stack")
    job = chaos_job(next(_seeds), samples=60, n=32, shard_samples=10)
    row = run_scenario(stack, scenario, job)
    ROWS.append(row)
    assert row.ok, f"{scenario}: {row.detail}\n{stack.logs()}"
    assert row.lost == 0 and row.duplicates == 0, row
    assert row.recovery_seconds <= RECOVERY_BUDGET, row
