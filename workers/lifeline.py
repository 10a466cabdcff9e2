"""Children die with their parent, even when the parent is SIGKILLed (Linux ``PR_SET_PDEATHSIG``).

:func:`die_with_parent` asks the kernel to send ``sig`` to the calling process when its parent
dies; :func:`preexec` is the same for a ``subprocess.Popen(preexec_fn=...)`` child, checked
against the parent that forked it (a parent that died between fork and ``prctl`` is caught
too).  Elsewhere than Linux both do nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM, *, parent: int | None = None) -> bool:
    """Receive ``sig`` when the parent dies; True if armed.  If the parent is already gone (we were
    re-parented), ``sig`` is raised at once."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), sig)
    return True


def preexec(sig: int = signal.SIGTERM):
    """A ``preexec_fn`` arming :func:`die_with_parent` in the child (before it execs)."""
    parent = os.getpid()

    def arm() -> None:
        die_with_parent(sig, parent=parent)

    return arm
