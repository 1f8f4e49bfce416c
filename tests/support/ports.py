"""A free TCP port for a test's server, never the same one twice in a run.

Binding port 0 and reading the port back can hand the same port to two callers: a mesh asks for
nine at once, and the kernel may give back one it just gave (seen in CI: CODE_SERVER_INTERNAL_PORT
equal to SSH_PORT), and two pytest-xdist workers may race for it. So each process takes ports from
its own block below the kernel's ephemeral range (32768-60999 on Linux: no client connection
takes them meanwhile), in order, skipping any that is in use on any address.

A second suite running at the same time (two checkouts, a developer's run beside CI) has the same
blocks: each port handed out is also reserved with a one-byte record lock at offset ``port`` in a
shared lock file. The kernel drops those locks when the process ends, so nothing is left to clean.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import socket
import tempfile
import threading
from pathlib import Path

BASE = 10_000
BLOCK = 2_500  # ports per process: master, gw0, gw1, ... (gw8 ends at 32_500)
_lock = threading.Lock()
LOCK_FILE = Path(tempfile.gettempdir()) / "comfypod-test-ports.lock"
_lock_fd: int | None = None


def _block_start() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0
    return BASE + (index % 9) * BLOCK


_candidates = itertools.cycle(range(_block_start(), _block_start() + BLOCK))


def _is_free(port: int) -> bool:
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET, "127.0.0.1")):
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


def _reserve(port: int) -> bool:
    """Lock byte ``port`` of the shared lock file for this process; False if another holds it."""
    global _lock_fd
    if _lock_fd is None:
        try:
            _lock_fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:  # another user's file: go without the cross-suite guard
            _lock_fd = -1
    if _lock_fd < 0:
        return True
    try:
        fcntl.lockf(_lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
    except OSError:
        return False
    return True


def free_port() -> int:
    with _lock:
        for _ in range(BLOCK):
            port = next(_candidates)
            if _reserve(port) and _is_free(port):
                return port
    raise RuntimeError(f"no free port in {_block_start()}-{_block_start() + BLOCK - 1}")
