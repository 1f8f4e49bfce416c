"""Download throughput on loopback: ComfyPod's downloader against curl and aria2c.

A file (2 GiB by default) is served by the project's test range server, in its own process:
once at full speed and once throttled per connection (like a CDN that caps each stream).
Each client fetches it to disk in the same run:

* curl, one stream (``curl -o``);
* aria2c with 8 connections (``aria2c -x8 -s8``);
* ComfyPod (``presets.download``: DOWNLOAD_CONNECTIONS ranged connections, sha256 checked
  while downloading, fsync and atomic rename), and again without a known sha256 (comfypod*).

It prints MiB/s per client and our ratio to each. Goals: >= 0.95x curl (full speed) and
>= 1.0x aria2c on the per-connection-throttled server.

    .venv/bin/python bench/download.py                 # 2 GiB, throttle 64 MiB/s per connection
    .venv/bin/python bench/download.py --size 256M --throttle 16M
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from presets.download import Downloader, DownloadOptions, FileRequest  # noqa: E402
from services.settings import load_settings  # noqa: E402

UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1] if text and text[-1] in UNITS else ""
    return int(float(text[: len(text) - len(unit)] or 0) * UNITS[unit])


def make_source(path: Path, size: int) -> str:
    """Write ``size`` pseudo-random bytes (incompressible) and return their sha256."""
    block = os.urandom(8 << 20)
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        left = size
        while left:
            piece = block[: min(left, len(block))]
            handle.write(piece)
            digest.update(piece)
            left -= len(piece)
    return digest.hexdigest()


class Served:
    """The range server in a child process (so it does not share our interpreter's lock)."""

    def __init__(self, source: Path, throttle: int) -> None:
        cmd = [sys.executable, "-m", "tests.support.range_server", str(source)]
        if throttle:
            cmd += ["--throttle", str(throttle)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            raise SystemExit("the range server did not start")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()


def timed(func) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def run_curl(url: str, dest: Path) -> None:
    subprocess.run(["curl", "-sS", "--fail", "-o", str(dest), url], check=True)


def run_aria2c(url: str, dest: Path, connections: int) -> None:
    subprocess.run(
        ["aria2c", f"-x{connections}", f"-s{connections}", "-k1M", "--file-allocation=none", "--quiet=true",
         "--allow-overwrite=true", "--auto-file-renaming=false", "--check-certificate=false",
         "-d", str(dest.parent), "-o", dest.name, url],
        check=True,
    )


def run_ours(url: str, dest: Path, digest: str | None, size: int, connections: int, workspace: Path) -> None:
    settings = load_settings({"WORKSPACE": str(workspace), "RUN_DIR": str(workspace / "run"),
                              "DOWNLOAD_CONNECTIONS": str(connections)})
    downloader = Downloader(settings, options=DownloadOptions.from_settings(settings, free_margin=0),
                            token_rule=lambda u: None)
    result = downloader.fetch(FileRequest(url, dest, size=size, sha256=digest))
    assert result.sha256 == digest


def measure(name: str, func, dest: Path, size: int) -> float:
    dest.unlink(missing_ok=True)
    seconds = timed(func)
    if dest.stat().st_size != size:
        raise SystemExit(f"{name}: wrote {dest.stat().st_size} bytes, expected {size}")
    dest.unlink()
    return size / seconds / (1 << 20)


def make_clients(url: str, dest: Path, digest: str, size: int, connections: int, base: Path,
                 with_curl: bool) -> dict[str, object]:
    clients: dict[str, object] = {}
    if with_curl:
        clients["curl"] = lambda: run_curl(url, dest)
    clients[f"aria2c -x{connections}"] = lambda: run_aria2c(url, dest, connections)
    clients["comfypod"] = lambda: run_ours(url, dest, digest, size, connections, base)
    clients["comfypod*"] = lambda: run_ours(url, dest, None, size, connections, base)
    return clients


def best_of(repeat: int, clients: dict[str, object], dest: Path, size: int) -> dict[str, float]:
    """Run the clients in turn ``repeat`` times (interleaved, so load drifts hit all) and keep
    each one's best throughput."""
    best: dict[str, float] = {}
    for _ in range(repeat):
        for name, func in clients.items():
            best[name] = max(best.get(name, 0.0), measure(name, func, dest, size))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="2G", help="file size (e.g. 2G, 512M); default 2G")
    parser.add_argument("--throttle", default="64M", help="per-connection limit of the throttled server (bytes/s)")
    parser.add_argument("--connections", type=int, default=8, help="connections for aria2c and for us")
    parser.add_argument("--dir", type=Path, default=None, help="where files are written (default: a temp folder)")
    parser.add_argument("--skip-curl-throttled", action="store_true", help="do not run curl on the throttled server")
    parser.add_argument("--repeat", type=int, default=1, help="runs per client; the best is kept (default 1)")
    args = parser.parse_args(argv)
    for tool in ("curl", "aria2c"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    size = parse_size(args.size)
    throttle = parse_size(args.throttle)
    base = Path(tempfile.mkdtemp(prefix="bench-download-", dir=args.dir))
    try:
        source = base / "source.bin"
        print(f"writing a {size / (1 << 20):.0f} MiB source file ...", flush=True)
        digest = make_source(source, size)
        dest = base / "out" / "model.bin"
        dest.parent.mkdir()
        results: dict[str, dict[str, float]] = {}
        scenarios = (("full speed", 0), (f"throttled {throttle / (1 << 20):.0f} MiB/s per connection", throttle))
        for label, limit in scenarios:
            served = Served(source, limit)
            try:
                clients = make_clients(served.url, dest, digest, size, args.connections, base,
                                       with_curl=not (limit and args.skip_curl_throttled))
                row = best_of(args.repeat, clients, dest, size)
            finally:
                served.close()
            results[label] = row
            print(f"\n{label}:")
            for name, speed in row.items():
                print(f"  {name:<12} {speed:9.1f} MiB/s")
            for mine in ("comfypod", "comfypod*"):
                for name, speed in row.items():
                    if not name.startswith("comfypod"):
                        print(f"  {mine} / {name}: {row[mine] / speed:.2f}x")
        full = results["full speed"]
        throttled = next(v for k, v in results.items() if k != "full speed")
        aria = f"aria2c -x{args.connections}"
        print()
        for mine, what in (("comfypod", "with sha256"), ("comfypod*", "size check only")):
            curl_ratio = full[mine] / full["curl"]
            aria_ratio = throttled[mine] / throttled[aria]
            print(f"{what:>16}: {curl_ratio:.2f}x curl at full speed (goal 0.95: "
                  f"{'ok' if curl_ratio >= 0.95 else 'MISSED'}), {aria_ratio:.2f}x aria2c throttled "
                  f"(goal 1.00: {'ok' if aria_ratio >= 1.0 else 'MISSED'})")
        print("comfypod = sha256 verified while downloading + fsync + atomic rename; comfypod* = the same "
              "without a known sha256;\ncurl and aria2c neither hash nor fsync.")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
