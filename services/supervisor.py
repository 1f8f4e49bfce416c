"""Thin XML-RPC client of supervisord over its unix socket (used by the CLI and the admin)."""

from __future__ import annotations

import socket
import time
import xmlrpc.client
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path

from services.errors import ServiceError


class _UnixConnection(HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__()
        self._path = path
        self._timeout = timeout

    def make_connection(self, host):  # noqa: ANN001 - xmlrpc signature
        self.close()
        connection = _UnixConnection(self._path, self._timeout)
        self._connection = (host, connection)  # so Transport.close() closes it on every path
        return connection

    def request(self, host, handler, request_body, verbose=False):  # noqa: ANN001
        try:
            return super().request(host, handler, request_body, verbose)
        finally:
            self.close()  # one connection per call: nothing left open between calls


@dataclass(frozen=True)
class ProgramState:
    name: str
    state: str  # RUNNING, STOPPED, STARTING, BACKOFF, FATAL, EXITED, STOPPING, UNKNOWN
    pid: int
    uptime: int  # seconds, 0 unless RUNNING
    description: str
    exit_status: int
    spawn_error: str
    logfile: str

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"


class Supervisor:
    """Calls supervisord's RPC interface; every failure is a ServiceError with one line."""

    def __init__(self, socket_path: Path, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._proxy = xmlrpc.client.ServerProxy(
            "http://localhost/RPC2", transport=_UnixTransport(str(socket_path), timeout), allow_none=True
        )

    def _call(self, method: str, *args):
        try:
            return getattr(self._proxy.supervisor, method)(*args)
        except xmlrpc.client.Fault as fault:
            raise ServiceError(f"supervisord refused {method}{args}: {fault.faultString}") from None
        except TimeoutError:
            # supervisord is there but busy: a stop waits up to the program's stopwaitsecs
            raise ServiceError(
                f"supervisord did not finish {method}{args} within {self.timeout:g} s; "
                "the program may still be stopping or starting"
            ) from None
        except (OSError, xmlrpc.client.ProtocolError) as err:
            raise ServiceError(
                f"supervisord is not reachable at {self.socket_path} ({err}); is `comfypod up` running?"
            ) from None

    def states(self) -> list[ProgramState]:
        now = time.time()
        result = []
        for info in self._call("getAllProcessInfo"):
            running = info["statename"] == "RUNNING"
            result.append(
                ProgramState(
                    name=info["name"],
                    state=info["statename"],
                    pid=info["pid"],
                    uptime=int(now - info["start"]) if running and info["start"] else 0,
                    description=info["description"],
                    exit_status=info["exitstatus"],
                    spawn_error=info.get("spawnerr", ""),
                    logfile=info.get("stdout_logfile", ""),
                )
            )
        return result

    def state(self, name: str) -> ProgramState:
        for item in self.states():
            if item.name == name:
                return item
        raise ServiceError(f"no program named {name!r}")

    def start(self, name: str, wait: bool = True) -> None:
        self._call("startProcess", name, wait)

    def stop(self, name: str, wait: bool = True) -> None:
        self._call("stopProcess", name, wait)

    def restart(self, name: str) -> None:
        if self.state(name).state in ("RUNNING", "STARTING", "BACKOFF"):
            self._call("stopProcess", name, True)
        self._call("startProcess", name, True)

    def signal(self, name: str, sig: str) -> None:
        self._call("signalProcess", name, sig)

    def tail(self, name: str, length: int = 8192) -> str:
        text, _offset, _overflow = self._call("tailProcessStdoutLog", name, 0, length)
        return text

    def pid(self) -> int:
        return self._call("getPID")

    def shutdown(self) -> None:
        self._call("shutdown")

    def wait_for(self, names: list[str], state: str = "RUNNING", timeout: float = 30.0) -> dict[str, str]:
        """Wait until every named program is in ``state``; return the last states seen."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                states = {p.name: p.state for p in self.states()}
            except ServiceError:
                states = {}
            if states and all(states.get(n) == state for n in names):
                return states
            if time.monotonic() > deadline:
                return states
            time.sleep(0.1)


def from_settings(settings) -> Supervisor:
    return Supervisor(settings.supervisor_socket)
