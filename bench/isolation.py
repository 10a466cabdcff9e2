"""Run one benchmark row in a fresh process (its own allocator, caches and solver state), with a timeout."""

from __future__ import annotations

import multiprocessing as mp


def in_process(target, *args, timeout: float = 900, start: str = "fork"):
    """``target(conn, *args)`` in a child process started by ``start`` (``fork`` or ``spawn``); returns
    what the child sends on ``conn``, or ``{"error": "timeout after ... s"}`` (the child is killed)."""
    ctx = mp.get_context(start)
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(child, *args))
    proc.start()
    if not parent.poll(timeout):
        proc.kill()
        proc.join()
        return {"error": f"timeout after {timeout} s"}
    out = parent.recv()
    proc.join()
    return out
