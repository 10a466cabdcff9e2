"""One BLAS thread per process: generation parallelises over samples (processes), never inside a solve.

Measured (``../shared/research/baselines.md``): 2-thread OpenBLAS made GCRO-DR's small
dense kernels 2x *slower* at 64^2, and two solver processes on two cores beat one
process with two threads.  :func:`single_threaded_blas` is the one place that says so:
it sets the thread variables for child processes (unless the user set them) and limits
the BLAS/OpenMP pools already loaded in this process (threadpoolctl), which also binds
children forked later.
"""

from __future__ import annotations

import os

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def single_threaded_blas() -> int:
    """Apply the thread policy to this process and its future children; returns the thread count."""
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    threads = int(os.environ["OPENBLAS_NUM_THREADS"])
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    return threads
