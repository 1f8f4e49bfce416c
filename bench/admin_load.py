"""Load on the admin behind gunicorn: wrk, 50 connections for 10 s, on /api/system and /presets.

A third row, ``/healthz`` (a handler that does no work), is the floor: what gunicorn, Flask and
wrk cost on this machine before any page does anything. The goal is not judged on it.

By default it starts the admin the way supervisord does (``gunicorn --config
python:admin.gunicorn_conf admin.wsgi:app``: gthread workers, ADMIN_WORKERS of them) on a
temporary workspace holding the full default catalog (56 presets), with a few installed files
so the status scan has work to do. Requests carry the API token (``Authorization: Bearer``).
Or point it at a running admin with --url and --token.

It prints requests/s and latency percentiles (p50, p99) per endpoint. Goal: p99 under 50 ms.
A second table, one connection at a time, shows the service time without queueing: with 50
connections on few cores, p99 is mostly time spent waiting for a CPU.

    .venv/bin/python bench/admin_load.py
    .venv/bin/python bench/admin_load.py --connections 50 --duration 10 --threads 2
    .venv/bin/python bench/admin_load.py --url http://127.0.0.1:18082 --token "$(cat /workspace/config/state/api_token)"
    GUNICORN_CMD_ARGS="--threads 4" .venv/bin/python bench/admin_load.py    # try other gunicorn settings
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.request import Request, urlopen

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services import credentials, paths  # noqa: E402
from services.settings import load_settings  # noqa: E402

FLOOR = "/healthz"  # no work at all: the floor that gunicorn, Flask and wrk set on this machine
ENDPOINTS = (FLOOR, "/api/system", "/presets")
GOAL_P99_MS = 50.0
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def to_ms(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, p50/p90/p99 (ms), request count and errors from ``wrk --latency`` output."""
    result: dict[str, float] = {}
    rps = re.search(r"Requests/sec:\s*([0-9.]+)", output)
    result["rps"] = float(rps.group(1)) if rps else 0.0
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s*{pct}(?:\.000)?%\s+(\S+)", output, re.M)
        result[f"p{pct}"] = to_ms(match.group(1)) if match else float("nan")
    total = re.search(r"(\d+) requests in", output)
    result["requests"] = float(total.group(1)) if total else 0.0
    errors = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    result["errors"] = float(errors.group(1)) if errors else 0.0
    if socket_errors:
        result["errors"] += sum(float(x) for x in socket_errors.groups())
    return result


class Admin:
    """gunicorn serving the admin on a throw-away workspace with the default catalog."""

    def __init__(self, workers: int | None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="admin-load-"))
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ", "GUNICORN_CMD_ARGS")},
            "WORKSPACE": str(self.dir / "workspace"),
            "RUN_DIR": str(self.dir / "run"),
            "APP_DIR": str(ROOT),
            "ADMIN_INTERNAL_PORT": str(self.port),
            "ACCESS_PASSWORD": "load-test-password",
            "LOG_LEVEL": "warning",
        }
        if workers:
            self.env["ADMIN_WORKERS"] = str(workers)
        self.settings = load_settings(self.env)
        self.process: subprocess.Popen | None = None

    def prepare(self) -> None:
        settings = self.settings
        paths.ensure_workspace(settings.workspace)
        credentials.ensure_credentials(settings)
        from presets.catalog import DEFAULT_PATH, load_catalog

        shutil.copyfile(DEFAULT_PATH, settings.presets_file)
        catalog = load_catalog(settings.presets_file)
        for preset in list(catalog)[:6]:  # a few installed presets: the status scan finds real files
            for item in preset.files:
                target = settings.models_dir / item.path
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as handle:
                    handle.truncate(item.size or 1024)
        print(f"catalog: {len(catalog.presets)} presets; workspace {settings.workspace}")

    def start(self) -> str:
        gunicorn = Path(sys.executable).parent / "gunicorn"
        self.process = subprocess.Popen(
            [str(gunicorn), "--config", "python:admin.gunicorn_conf", "admin.wsgi:app"],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=open(self.dir / "gunicorn.log", "wb"),
        )
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urlopen(f"{url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return url
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"gunicorn did not start; see {self.dir / 'gunicorn.log'}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def warm(url: str, token: str) -> None:
    """One request per endpoint per worker so no worker loads the catalog during the run."""
    for _ in range(8):
        for path in ENDPOINTS:
            request = Request(url + path, headers={"Authorization": f"Bearer {token}"})
            with urlopen(request, timeout=60) as response:
                response.read()


def run_wrk(url: str, token: str, connections: int, duration: int, threads: int) -> dict[str, dict[str, float]]:
    results = {}
    for path in ENDPOINTS:
        command = ["wrk", "--latency", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
                   "-H", f"Authorization: Bearer {token}", url + path]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        results[path] = parse_wrk(output)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running admin (default: start gunicorn on a temporary workspace)")
    parser.add_argument("--token", help="API token for --url")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=int, default=10, help="seconds per endpoint")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: ADMIN_WORKERS, 2)")
    parser.add_argument("--no-single", dest="single", action="store_false",
                        help="skip the one-connection run")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    admin = None
    try:
        if args.url:
            if not args.token:
                raise SystemExit("--url needs --token")
            url, token = args.url.rstrip("/"), args.token
        else:
            admin = Admin(args.workers)
            admin.prepare()
            url = admin.start()
            token = credentials.api_token(admin.settings).reveal()
            print(f"gunicorn: {admin.settings.admin_workers} gthread workers x 8 threads on {url}")
        warm(url, token)
        print(f"wrk: {args.connections} connections, {args.duration} s per endpoint, {os.cpu_count()} CPUs\n")
        results = run_wrk(url, token, args.connections, args.duration, args.threads)
        single = run_wrk(url, token, 1, max(2, args.duration // 2), 1) if args.single else {}
    finally:
        if admin:
            admin.stop()
    if single:
        print(f"{'1 connection':<14}{'req/s':>10}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}")
        for path, r in single.items():
            print(f"{path:<14}{r['rps']:>10.0f}{r['p50']:>10.2f}{r['p90']:>10.2f}{r['p99']:>10.2f}")
        print()
    load = os.getloadavg()[0]
    print(f"{args.connections} connections (load average {load:.1f} on {os.cpu_count()} CPUs)")
    head = f"{'endpoint':<14}{'req/s':>10}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'errors':>8}"
    print(f"{head}  goal p99<{GOAL_P99_MS:g}ms")
    ok = True
    for path, r in results.items():
        met = r["p99"] < GOAL_P99_MS and r["errors"] == 0
        if path == FLOOR:
            verdict = "(floor)"
        else:
            ok &= met
            verdict = "met" if met else "MISSED"
        print(f"{path:<14}{r['rps']:>10.0f}{r['p50']:>10.1f}{r['p90']:>10.1f}{r['p99']:>10.1f}{r['errors']:>8.0f}  "
              f"{verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
