"""The XML-RPC client against a real supervisord (a tiny config of its own)."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.errors import ServiceError
from services.supervisor import Supervisor


@pytest.fixture
def supervisord(run_dir: Path, tmp_path: Path):
    sock = run_dir / "s.sock"
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"""
[unix_http_server]
file={sock}
[supervisord]
nodaemon=true
logfile={tmp_path}/supervisord.log
pidfile={tmp_path}/supervisord.pid
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[program:sleeper]
command={sys.executable} -c "import time; print('hello from sleeper', flush=True); time.sleep(600)"
startsecs=0
autorestart=true
stdout_logfile={tmp_path}/sleeper.log
[program:idle]
command=sleep 600
autostart=false
startsecs=0
""")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "supervisord"), "-c", str(conf)])
    client = Supervisor(sock)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if sock.exists():
            try:
                client.states()
                break
            except ServiceError:
                pass
        time.sleep(0.1)
    yield client
    proc.terminate()
    proc.wait(20)


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
    time.sleep(0.3)
    assert "hello from sleeper" in supervisord.tail("sleeper")


def test_errors_are_one_line(supervisord, run_dir):
    with pytest.raises(ServiceError, match="no program named"):
        supervisord.state("nope")
    with pytest.raises(ServiceError, match="refused"):
        supervisord.start("nope")
    with pytest.raises(ServiceError, match="not reachable"):
        Supervisor(run_dir / "missing.sock").states()
