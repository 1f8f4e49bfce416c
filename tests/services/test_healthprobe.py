"""services.healthprobe: decisions with a stand-in supervisord, the listener protocol, and (e2e)
a real supervisord mesh where a hung fake ComfyUI is restarted and a crash is recorded."""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field

import pytest
import requests

from services import healthprobe
from services.errors import ServiceError
from services.supervisor import ProgramState


def state(name="comfyui", statename="RUNNING", pid=100, uptime=500, exit_status=0) -> ProgramState:
    return ProgramState(name, statename, pid, uptime, "", exit_status, "", "")


@dataclass
class StubSupervisor:
    """Enough of services.supervisor.Supervisor; TERM is ignored (a hung process), KILL works."""

    current: ProgramState = field(default_factory=state)
    signals: list[str] = field(default_factory=list)
    started: int = 0
    autorestart: bool = True

    def state(self, name: str) -> ProgramState:
        return self.current

    def signal(self, name: str, sig: str) -> None:
        self.signals.append(sig)
        if sig == "KILL":
            if self.autorestart:
                self.current = state(pid=self.current.pid + 1, uptime=0, statename="STARTING")
            else:
                self.current = state(pid=0, uptime=0, statename="EXITED", exit_status=-9)

    def start(self, name: str, wait: bool = True) -> None:
        self.started += 1
        self.current = state(pid=999, uptime=0, statename="STARTING")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def make_probe(settings, supervisor, answers: list[bool], **kw) -> healthprobe.Probe:
    clock = Clock()
    answers = list(answers)
    return healthprobe.Probe(settings=settings, supervisor=supervisor,
                             check=lambda: (answers.pop(0), "answer") if answers else (True, "ok"),
                             clock=clock, sleep=clock.sleep, **{"failures_needed": 3, "grace": 60, **kw})


def test_no_probe_during_grace_or_when_not_running(settings):
    supervisor = StubSupervisor(current=state(uptime=10))
    probe = make_probe(settings, supervisor, [False] * 5)
    assert probe.tick().startswith("grace")
    supervisor.current = state(statename="BACKOFF", uptime=0)
    assert probe.tick() == "not running (BACKOFF)"
    assert supervisor.signals == []


def test_restart_after_n_failed_probes(settings):
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    (settings.logs_dir / "comfyui.log").write_text("loading model\n" + "line\n" * 30 + "stuck in sampler\n")
    supervisor = StubSupervisor()
    probe = make_probe(settings, supervisor, [False, True, False, False, False])
    assert [probe.tick() for _ in range(4)] == ["failed 1/3", "ok", "failed 1/3", "failed 2/3"]
    assert probe.tick() == "restarted"
    assert supervisor.signals == ["TERM", "KILL"]  # TERM ignored by the hung process, then KILL
    health = healthprobe.read_health(settings)
    assert health["restarts"] == 1 and health["crashes"] == 0
    assert "stopped answering /system_stats for 3 probes" in health["last_restart"]["reason"]
    assert health["last_restart"]["log_tail"][-1] == "stuck in sampler"
    assert len(health["last_restart"]["log_tail"]) == healthprobe.LOG_LINES
    # the exit of the process we killed is not a crash
    assert probe.exited({"processname": "comfyui", "pid": "100", "expected": "0"}) == "exit after our restart"
    assert healthprobe.read_health(settings)["crashes"] == 0


def test_starts_again_when_supervisord_does_not(settings):
    supervisor = StubSupervisor(autorestart=False)
    probe = make_probe(settings, supervisor, [False], failures_needed=1)
    assert probe.tick() == "restarted"
    assert supervisor.started == 1


def test_crash_is_recorded_with_exit_status_and_log(settings):
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    (settings.logs_dir / "comfyui.log").write_text("Traceback (most recent call last):\nMemoryError\n")
    (settings.logs_dir / "supervisord.log").write_text(
        "2026-11-28 10:32:59,427 WARN exited: comfyui (terminated by SIGKILL; not expected)\n"
        "2026-11-28 10:33:01,128 WARN exited: comfyui (exit status 3; not expected)\n")
    supervisor = StubSupervisor(current=state(statename="EXITED", exit_status=3, pid=0, uptime=0))
    probe = make_probe(settings, supervisor, [])
    assert probe.exited({"processname": "comfyui", "pid": "42", "expected": "0"}) == "crash recorded"
    assert probe.exited({"processname": "comfyui", "pid": "43", "expected": "1"}) == "expected exit"
    assert probe.exited({"processname": "admin", "pid": "44", "expected": "0"}) == "other program"
    health = healthprobe.read_health(settings)
    assert health["crashes"] == 1
    assert health["last_crash"]["reason"] == "exited unexpectedly (exit status 3)"
    assert health["last_crash"]["exit_status"] == 3 and health["last_crash"]["log_tail"][-1] == "MemoryError"
    assert [h["kind"] for h in health["history"]] == ["crash"]


def test_unreadable_state_file_reads_as_empty(settings):
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    healthprobe.health_file(settings).write_text("{not json")
    assert healthprobe.read_health(settings)["restarts"] == 0


def test_supervisor_errors_do_not_stop_the_listener(settings):
    class Broken:
        def state(self, name):
            raise ServiceError("supervisord is not reachable")

    probe = make_probe(settings, Broken(), [])
    assert probe.tick().startswith("no state")


def test_listener_protocol(settings):
    supervisor = StubSupervisor(current=state(uptime=1))
    probe = make_probe(settings, supervisor, [])
    payload = "processname:comfyui groupname:comfyui from_state:RUNNING expected:0 pid:7"
    stdin = io.StringIO(
        "ver:3.0 server:supervisor serial:1 pool:healthprobe poolserial:1 eventname:TICK_5 len:15\n"
        "when:1700000000"
        "ver:3.0 server:supervisor serial:2 pool:healthprobe poolserial:2 eventname:PROCESS_STATE_EXITED "
        f"len:{len(payload)}\n"
        + payload
    )
    stdout = io.StringIO()
    healthprobe.listen(probe, stdin, stdout)
    assert stdout.getvalue() == "READY\nRESULT 2\nOKREADY\nRESULT 2\nOKREADY\n"
    assert healthprobe.read_health(settings)["crashes"] == 1


def test_http_check_against_the_fake(fake_comfyui):
    ok, detail = healthprobe.http_check(fake_comfyui.url, timeout=2)()
    assert ok and detail.endswith("ms")
    fake_comfyui.hang(seconds=5)
    time.sleep(0.3)
    ok, detail = healthprobe.http_check(fake_comfyui.url, timeout=1)()
    assert not ok and detail == "no answer in 1s"


@pytest.mark.e2e
def test_mesh_restarts_a_hung_comfyui_and_records_a_crash(mesh_factory):
    mesh = mesh_factory(COMFYUI_HEALTH_GRACE="1", COMFYUI_HEALTH_FAILURES="2", ENABLE_CODE_SERVER="false")
    supervisor = mesh.supervisor
    assert supervisor.state("healthprobe").state == "RUNNING"
    comfy = mesh.internal_url("comfyui")
    mesh.wait_http(comfy + "/system_stats")
    before = supervisor.state("comfyui").pid
    requests.post(comfy + "/__fake__/hang", timeout=5)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = supervisor.state("comfyui")
        if now.pid not in (0, before) and now.state == "RUNNING":
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"hung ComfyUI was not restarted: {supervisor.state('comfyui')}\n"
                    f"{(mesh.settings.logs_dir / 'healthprobe.log').read_text(errors='replace')[-2000:]}")
    health = healthprobe.read_health(mesh.settings)
    assert health["restarts"] == 1 and health["crashes"] == 0
    mesh.wait_http(comfy + "/system_stats")
    requests.post(comfy + "/__fake__/exit", params={"code": 3}, timeout=5)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and healthprobe.read_health(mesh.settings)["crashes"] == 0:
        time.sleep(0.3)
    health = healthprobe.read_health(mesh.settings)
    assert health["crashes"] == 1, json.dumps(health)
    assert health["last_crash"]["exit_status"] == 3
    assert any("exiting with status 3" in line for line in health["last_crash"]["log_tail"])
