"""The `healthprobe` event listener: restart a ComfyUI that runs but stopped answering.

supervisord restarts a ComfyUI that exits, but not one that hangs. This listener gets TICK_5 and
PROCESS_STATE_EXITED events. On each tick, once ComfyUI has been RUNNING for the grace period
(loading models can block it for a while), it asks /system_stats; after COMFYUI_HEALTH_FAILURES
failed probes in a row it sends TERM, then KILL, and supervisord's autorestart brings ComfyUI back.
Every restart and every crash (exit status, last log lines) is recorded in
``config/state/comfyui-health.json``, which the admin shows.

The supervisord listener protocol: write READY, read a header line and its payload, write
``RESULT 2\\nOK``. stdout belongs to the protocol, so logging goes to stderr.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click
import requests

from services.errors import ServiceError
from services.files import write_atomic
from services.settings import Settings

log = logging.getLogger("comfypod.healthprobe")

PROGRAM = "comfyui"
STATE_FILE = "comfyui-health.json"
HISTORY_LIMIT = 20
_EVENT_FIELDS = {"restart": ("restarts", "last_restart"), "crash": ("crashes", "last_crash")}  # count, last
LOG_LINES = 20


def health_file(settings: Settings) -> Path:
    return settings.state_dir / STATE_FILE


def read_health(settings: Settings) -> dict[str, Any]:
    """What the admin shows: restart and crash counts, last crash reason, last probe."""
    try:
        data = json.loads(health_file(settings).read_text())
    except FileNotFoundError:
        data = {}
    except (OSError, ValueError) as err:
        log.warning("cannot read %s: %s", health_file(settings), err)
        data = {}
    data.setdefault("restarts", 0)
    data.setdefault("crashes", 0)
    data.setdefault("last_crash", None)
    data.setdefault("last_probe", None)
    data.setdefault("history", [])
    return data


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def last_log_lines(settings: Settings, lines: int = LOG_LINES) -> list[str]:
    path = settings.logs_dir / f"{PROGRAM}.log"
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


_EXITED = re.compile(r"exited: " + PROGRAM + r" \((?P<how>[^;)]*)")


def exit_reason(settings: Settings) -> tuple[str | None, int | None]:
    """How ComfyUI last exited, from supervisord's log: ("exit status 3", 3), ("terminated by SIGKILL", None).

    supervisord resets the exit status when autorestart spawns the program again, so its log line is
    the reliable record by the time the PROCESS_STATE_EXITED event is handled.
    """
    path = settings.logs_dir / "supervisord.log"
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 65536))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None, None
    matches = list(_EXITED.finditer(text))
    if not matches:
        return None, None
    how = matches[-1].group("how").strip()
    status = re.fullmatch(r"exit status (-?\d+)", how)
    return how, int(status.group(1)) if status else None


@dataclass
class Probe:
    """The decision logic, separate from supervisord's I/O so it can be tested with stubs."""

    settings: Settings
    supervisor: Any  # services.supervisor.Supervisor or a stand-in with state()/signal()/start()
    check: Callable[[], tuple[bool, str]]
    failures_needed: int = 3
    grace: float = 90.0
    kill_after: float = 10.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    failures: int = 0
    restarting_pids: set[int] = field(default_factory=set)

    def record(self, change: Callable[[dict], None]) -> dict:
        data = read_health(self.settings)
        change(data)
        _write(health_file(self.settings), data)
        return data

    def record_event(self, kind: str, reason: str, pid: int, exit_status: int | None, lines: list[str]) -> None:
        """Count a restart or a crash; it becomes the last of its kind and joins the bounded history."""
        count, last = _EVENT_FIELDS[kind]
        entry = {"at": _now(), "kind": kind, "reason": reason, "pid": pid, "exit_status": exit_status,
                 "log_tail": lines}

        def change(data: dict) -> None:
            data[count] += 1
            data[last] = entry
            data["history"] = (data["history"] + [entry])[-HISTORY_LIMIT:]

        self.record(change)

    def tick(self) -> str:
        """One TICK_5: returns what happened (for logs and tests)."""
        try:
            state = self.supervisor.state(PROGRAM)
        except ServiceError as err:
            return f"no state: {err}"
        if state.state != "RUNNING":
            self.failures = 0
            return f"not running ({state.state})"
        if state.uptime < self.grace:
            self.failures = 0
            return f"grace ({state.uptime}s < {self.grace:.0f}s)"
        ok, detail = self.check()
        self.record(lambda d: d.update(last_probe={"at": _now(), "ok": ok, "detail": detail,
                                                     "failures": 0 if ok else self.failures + 1}))
        if ok:
            self.failures = 0
            return "ok"
        self.failures += 1
        log.warning("ComfyUI did not answer /system_stats (%s): %d of %d", detail, self.failures, self.failures_needed)
        if self.failures < self.failures_needed:
            return f"failed {self.failures}/{self.failures_needed}"
        self.failures = 0
        self.restart(state.pid, f"stopped answering /system_stats for {self.failures_needed} probes ({detail})")
        return "restarted"

    def restart(self, pid: int, reason: str) -> None:
        lines = last_log_lines(self.settings)
        log.error("restarting ComfyUI (pid %d): %s", pid, reason)
        self.restarting_pids.add(pid)

        self.record_event("restart", reason, pid, None, lines)
        try:
            self.supervisor.signal(PROGRAM, "TERM")
        except ServiceError as err:
            log.warning("TERM failed: %s", err)
        deadline = self.clock() + self.kill_after
        while self.clock() < deadline:
            if self._gone(pid):
                break
            self.sleep(0.25)
        else:
            log.error("ComfyUI (pid %d) ignored TERM for %.0fs: sending KILL", pid, self.kill_after)
            try:
                self.supervisor.signal(PROGRAM, "KILL")
            except ServiceError as err:
                log.warning("KILL failed: %s", err)
        deadline = self.clock() + self.kill_after
        while self.clock() < deadline:
            state = self._state()
            if state is not None and state.pid != pid and state.state in ("RUNNING", "STARTING", "BACKOFF"):
                return
            self.sleep(0.25)
        state = self._state()
        if state is not None and state.state in ("EXITED", "STOPPED", "FATAL"):
            try:
                self.supervisor.start(PROGRAM, False)
            except ServiceError as err:
                log.error("cannot start ComfyUI again: %s", err)

    def _state(self):
        try:
            return self.supervisor.state(PROGRAM)
        except ServiceError:
            return None

    def _gone(self, pid: int) -> bool:
        state = self._state()
        return state is None or state.pid != pid or state.state != "RUNNING"

    def exited(self, payload: dict[str, str]) -> str:
        """PROCESS_STATE_EXITED: an unexpected exit of ComfyUI is a crash worth recording."""
        if payload.get("processname") != PROGRAM:
            return "other program"
        pid = int(payload.get("pid", "0") or 0)
        if pid in self.restarting_pids:
            self.restarting_pids.discard(pid)
            return "exit after our restart"
        if payload.get("expected") == "1":
            return "expected exit"
        how, exit_status = exit_reason(self.settings)
        if exit_status is None and how is None:
            state = self._state()
            if state is not None and state.state in ("EXITED", "BACKOFF", "FATAL"):
                exit_status = state.exit_status
        lines = last_log_lines(self.settings)
        if how is None:
            how = f"exit status {exit_status}" if exit_status is not None else "no exit status known"
        reason = f"exited unexpectedly ({how})"
        log.error("ComfyUI (pid %d) %s", pid, reason)

        self.record_event("crash", reason, pid, exit_status, lines)
        return "crash recorded"


def http_check(url: str, timeout: float) -> Callable[[], tuple[bool, str]]:
    def check() -> tuple[bool, str]:
        started = time.monotonic()
        try:
            response = requests.get(url.rstrip("/") + "/system_stats", timeout=timeout)
        except requests.Timeout:
            return False, f"no answer in {timeout:.0f}s"
        except requests.RequestException as err:
            return False, type(err).__name__
        if response.status_code != 200:
            return False, f"HTTP {response.status_code}"
        return True, f"{(time.monotonic() - started) * 1000:.0f} ms"

    return check


def parse_payload(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    first_line = text.split("\n", 1)[0]
    for token in first_line.split():
        key, _, value = token.partition(":")
        fields[key] = value
    return fields


def listen(probe: Probe, stdin: IO[str], stdout: IO[str]) -> None:
    """supervisord's event listener loop: READY → header → payload → RESULT."""
    while True:
        stdout.write("READY\n")
        stdout.flush()
        line = stdin.readline()
        if not line:
            return
        header = parse_payload(line)
        payload = stdin.read(int(header.get("len", "0")))
        event = header.get("eventname", "")
        try:
            if event.startswith("TICK"):
                outcome = probe.tick()
            elif event == "PROCESS_STATE_EXITED":
                outcome = probe.exited(parse_payload(payload))
            else:
                outcome = "ignored"
            log.debug("%s: %s", event, outcome)
        except (OSError, ValueError, ServiceError) as err:
            log.error("%s handling failed: %s", event, err)
        stdout.write("RESULT 2\nOK")
        stdout.flush()


@click.command("healthprobe")
def healthprobe_command() -> None:
    """ComfyUI health probe (supervisord event listener on TICK_5)."""
    from services.cli import get_settings
    from services.logs import settings_secrets, setup_logging
    from services.supervisor import Supervisor

    settings = get_settings(click.get_current_context())
    setup_logging(settings.log_level, settings_secrets(settings), stream=sys.stderr)
    probe = Probe(
        settings=settings,
        supervisor=Supervisor(settings.supervisor_socket, timeout=30.0),
        check=http_check(settings.comfyui_url, timeout=4.0),
        failures_needed=settings.comfyui_health_failures,
        grace=float(settings.comfyui_health_grace),
    )
    log.info("probing %s/system_stats every 5s after %ss; restart after %d failures",
             settings.comfyui_url, settings.comfyui_health_grace, settings.comfyui_health_failures)
    listen(probe, sys.stdin, sys.stdout)
