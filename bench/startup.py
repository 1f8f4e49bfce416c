"""Seconds from `comfypod up` to every enabled program RUNNING and the admin answering /healthz.

Runs the real mesh (fake ComfyUI stand-in, so ComfyUI's own load time is excluded) on a
temporary workspace with free ports, three times, and prints each run and the median.
Goal: under 3 s.
"""

from __future__ import annotations

import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.programs import PROGRAMS  # noqa: E402
from services.settings import load_settings  # noqa: E402
from services.supervisor import Supervisor  # noqa: E402
from tests.conftest import base_environ  # noqa: E402
from tests.plugins.mesh import PORT_VARIABLES, free_port  # noqa: E402


def one_run() -> float:
    tmp = Path(tempfile.mkdtemp(prefix="cpbench-"))
    try:
        (tmp / "ws").mkdir()
        env = base_environ(tmp / "ws", tmp / "run", ENABLE_JUPYTER="false",
                           **{name: str(free_port()) for name in PORT_VARIABLES})
        settings = load_settings(env)
        wanted = [p.name for p in PROGRAMS if getattr(settings, p.enable_field) and not p.find(settings)]
        start = time.monotonic()
        proc = subprocess.Popen([str(Path(sys.executable).parent / "comfypod"), "up"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = Supervisor(settings.supervisor_socket)
        try:
            while True:
                if time.monotonic() - start > 60:
                    raise SystemExit("mesh did not come up in 60 s")
                if settings.supervisor_socket.exists():
                    states = client.wait_for(wanted, timeout=0)
                    if all(states.get(n) == "RUNNING" for n in wanted):
                        try:
                            ok = requests.get(f"{settings.admin_url}/healthz", timeout=1).status_code == 200
                        except requests.RequestException:
                            ok = False
                        if ok:
                            return time.monotonic() - start
                time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    runs = [one_run() for _ in range(3)]
    for i, value in enumerate(runs, 1):
        print(f"run {i}: {value:.2f} s")
    print(f"startup: median {statistics.median(runs):.2f} s from `comfypod up` to all programs RUNNING "
          f"and /healthz 200 (goal < 3 s)")


if __name__ == "__main__":
    main()
