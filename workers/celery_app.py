"""The Celery application, configured for long CPU-bound shard tasks.

* ``acks_late`` + ``task_reject_on_worker_lost``: a shard whose worker dies is
  redelivered (the task caps deliveries per shard, see ``Settings.max_attempts``);
* ``worker_prefetch_multiplier=1``: a worker holds one shard at a time;
* broker ``visibility_timeout`` far above the longest shard; kombu's keys carry the
  deployment's ``key_prefix`` (isolation on a shared Redis);
* soft/hard time limits per task, JSON only, no result backend (state lives in Redis
  through :mod:`pdeforge.workers.state`; fan-in is an atomic Redis set, never ``.get()``);
* every worker starts the recovery sweep (:mod:`pdeforge.workers.recovery`) as a child
  process once it is ready (``PDEFORGE_SWEEPER``), so lost shards come back within about a
  lease period -- the visibility timeout is only the broker's own last resort;
* pool children, and the sweep, die with the worker's main process even when it is SIGKILLed
  (:mod:`pdeforge.workers.lifeline`): no orphan keeps solving a shard nobody can acknowledge.

The broker is ``PDEFORGE_BROKER_URL`` and nothing else: a worker process refuses to start
without it, and :func:`pdeforge.workers.tasks.enqueue` refuses to send (Celery's own default,
an AMQP server on localhost, would silently take the messages).
"""

from __future__ import annotations

import signal
import subprocess
import sys

from celery import Celery, signals

from .config import get_settings
from .lifeline import die_with_parent, preexec


def make_celery() -> Celery:
    s = get_settings()
    app = Celery("pdeforge", broker=s.broker_url or None, include=["pdeforge.workers.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=s.queue,
        task_soft_time_limit=s.shard_soft_time_limit,
        task_time_limit=s.shard_time_limit,
        broker_transport_options=s.broker_transport_options(),
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a Redis restart never makes a worker give up and exit
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_track_started=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


app = make_celery()


@signals.worker_init.connect
def _check_broker(**_) -> None:
    get_settings().require_broker()


@signals.worker_process_init.connect
def _pool_child_init(**_) -> None:
    from pdeforge.solvers.threads import single_threaded_blas

    single_threaded_blas()
    die_with_parent(signal.SIGKILL)


_sweeper: list[subprocess.Popen] = []


@signals.worker_ready.connect
def _start_sweeper(**_) -> None:
    if get_settings().sweeper and not _sweeper:
        _sweeper.append(subprocess.Popen([sys.executable, "-m", "pdeforge.workers.recovery"],
                                         stdin=subprocess.DEVNULL, preexec_fn=preexec(signal.SIGTERM)))


@signals.worker_shutdown.connect
def _stop_sweeper(**_) -> None:
    while _sweeper:
        proc = _sweeper.pop()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
