"""Tie a forked worker's life to its parent (Linux ``prctl(PR_SET_PDEATHSIG)``).

A gunicorn worker whose master is killed with SIGKILL (the OOM killer, ``kill -9``) would live on
with the listening socket it inherited, and the master supervisord starts next could not bind the
port until the orphan noticed, seconds later when it had finished loading the app. With this set
in the worker right after the fork, the kernel kills it the moment its master dies.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal

log = logging.getLogger("comfypod.parent_death")

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies; True when it is set.

    If the parent already died before this call (between the fork and now), exit at once."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux: no prctl
        armed = False
    if not armed:
        log.warning("cannot tie pid %d to its parent (prctl PR_SET_PDEATHSIG unavailable)", os.getpid())
    if os.getppid() != parent_pid:
        os._exit(1)
    return armed
