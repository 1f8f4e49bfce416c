"""A real supervisord for tests: the programs a test names, on the test's socket, stopped at the end.

    with running_supervisord(sock, tmp_path, PROGRAMS) as client:   # client: services.supervisor.Supervisor
        client.state("name")
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from services.errors import ServiceError
from services.supervisor import Supervisor


def _listed(client: Supervisor) -> bool:
    return bool(client.states())


@contextmanager
def running_supervisord(sock: Path, folder: Path, programs: str,
                        ready: Callable[[Supervisor], bool] = _listed,
                        timeout: float = 20.0) -> Iterator[Supervisor]:
    """Write ``folder/supervisord.conf`` (its log and pid file in ``folder``) with the ``[program:…]``
    sections in ``programs``, start supervisord and wait until ``ready(client)`` (default: it answers
    with its programs)."""
    conf = folder / "supervisord.conf"
    conf.write_text(f"""
[unix_http_server]
file={sock}
[supervisord]
nodaemon=true
logfile={folder}/supervisord.log
pidfile={folder}/supervisord.pid
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
{programs}""")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "supervisord"), "-c", str(conf)])
    try:
        client = Supervisor(sock)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sock.exists():
                try:
                    if ready(client):
                        break
                except ServiceError:
                    pass
            time.sleep(0.1)
        yield client
    finally:
        proc.terminate()
        proc.wait(20)
