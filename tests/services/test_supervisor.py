"""The XML-RPC client against a real supervisord (a tiny config of its own)."""

import sys
import time
from pathlib import Path

import pytest

from services.errors import ServiceError
from services.supervisor import Supervisor
from tests.support.supervisord import running_supervisord

# stopwaitsecs is short: a SIGTERM that lands between supervisord's fork and exec is lost, and
# the stop then waits for the SIGKILL (default 10 s, as long as the client's timeout)
PROGRAMS = f"""
[program:sleeper]
command={sys.executable} -c "import time; print('hello from sleeper', flush=True); time.sleep(600)"
startsecs=0
autorestart=true
stdout_logfile=%(here)s/sleeper.log
stopwaitsecs=2
[program:idle]
command=sleep 600
autostart=false
startsecs=0
stopwaitsecs=2
"""


@pytest.fixture
def supervisord(run_dir: Path, tmp_path: Path):
    with running_supervisord(run_dir / "s.sock", tmp_path, PROGRAMS) as client:
        yield client


def test_states_start_stop_restart(supervisord):
    assert supervisord.wait_for(["sleeper"])["sleeper"] == "RUNNING"
    assert supervisord.state("idle").state == "STOPPED"
    supervisord.start("idle")
    assert supervisord.state("idle").running
    supervisord.stop("idle")
    assert supervisord.state("idle").state == "STOPPED"
    pid = supervisord.state("sleeper").pid
    supervisord.restart("sleeper")
    after = supervisord.state("sleeper")
    assert after.running and after.pid != pid
    deadline = time.monotonic() + 10  # the new process writes its line when it gets a CPU
    while "hello from sleeper" not in supervisord.tail("sleeper") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "hello from sleeper" in supervisord.tail("sleeper")


def test_errors_are_one_line(supervisord, run_dir):
    with pytest.raises(ServiceError, match="no program named"):
        supervisord.state("nope")
    with pytest.raises(ServiceError, match="refused"):
        supervisord.start("nope")
    with pytest.raises(ServiceError, match="not reachable"):
        Supervisor(run_dir / "missing.sock").states()
