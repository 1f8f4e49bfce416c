"""Issue 11, chaos: the whole mesh (supervisord, nginx, gunicorn admin, downloader, fake ComfyUI)
runs a preset install from a local model server and a stream of workflow runs while, for a
bounded time, random programs are killed with SIGKILL. Afterwards every program is RUNNING
again, the install completes, every file in models/ has its exact size and sha256, the queue
holds exactly one finished job per preset (none lost, none duplicated) and the admin answers.

The seed of the random choices and the kill schedule are printed, and the figures are recorded
in artifacts/reliability.json.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from presets.install import enqueue_presets
from presets.queue import JobQueue
from services.comfyui_client import ComfyUIClient
from services.errors import ComfyPodError
from tests.plugins.downloads import write_test_catalog
from tests.support.range_server import safetensors_blob

pytestmark = pytest.mark.e2e

CHAOS_SECONDS = 20.0
VICTIMS = ("comfyui", "admin", "downloader", "nginx")
MiB = 1024 * 1024


def _blob(seed: int, size: int) -> bytes:
    return safetensors_blob(size, seed=seed + 1)  # the downloader checks the safetensors header


def _prompt(color: int) -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "chaos"}},
    }


class Runs(threading.Thread):
    """Workflow runs through services.comfyui_client, one after the other, until stopped."""

    def __init__(self, base_url: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.base_url, self.stop = base_url, stop
        self.ok = self.broken = 0

    def run(self) -> None:
        color = 0
        while not self.stop.is_set():
            color += 1
            try:
                outcome = ComfyUIClient(self.base_url, timeout=5).run(_prompt(color), timeout=10)
            except (ComfyPodError, requests.RequestException, OSError):
                self.broken += 1  # ComfyUI was killed under it: expected during chaos
                time.sleep(0.3)
                continue
            if outcome.status == "success":
                self.ok += 1
            else:
                self.broken += 1


class Prober(threading.Thread):
    """GET /healthz through nginx every 0.3 s: how often the front door answered."""

    def __init__(self, url: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.stop = url, stop
        self.answered = self.missed = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                ok = requests.get(self.url, timeout=2).status_code == 200
            except requests.RequestException:
                ok = False
            if ok:
                self.answered += 1
            else:
                self.missed += 1
            time.sleep(0.3)


def test_sigkill_chaos_loses_nothing(mesh_factory, range_server, settings, figures) -> None:
    # a small catalog on the local model server: two presets sharing one file
    blobs = {name: _blob(i, size) for i, (name, size) in
             enumerate((("a1", 3 * MiB), ("shared", 2 * MiB), ("b1", 3 * MiB)))}
    urls = {name: range_server.add(f"/{name}.safetensors", data, throttle=128 * 1024) for name, data in blobs.items()}
    files = {
        "CHAOS_A": [("checkpoints/chaos-a1.safetensors", urls["a1"], blobs["a1"]),
                    ("vae/chaos-shared.safetensors", urls["shared"], blobs["shared"])],
        "CHAOS_B": [("loras/chaos-b1.safetensors", urls["b1"], blobs["b1"]),
                    ("vae/chaos-shared.safetensors", urls["shared"], blobs["shared"])],
    }
    write_test_catalog(settings.presets_file, files)
    expected = {rel: hashlib.sha256(data).hexdigest() for items in files.values() for rel, _u, data in items}
    sizes = {rel: len(data) for items in files.values() for rel, _u, data in items}

    mesh = mesh_factory(ENABLE_CODE_SERVER="false", DOWNLOAD_CONNECTIONS="2", DOWNLOAD_CONCURRENCY="2")
    sup = mesh.supervisor
    names = mesh.enabled()
    assert set(VICTIMS) <= set(names), names
    job_ids = enqueue_presets(mesh.settings, ["CHAOS_A", "CHAOS_B"])

    stop = threading.Event()
    runs = Runs(mesh.internal_url("comfyui"), stop)
    prober = Prober(f"{mesh.url('admin')}/healthz", stop)
    runs.start()
    prober.start()

    seed = int(time.time())
    rng = random.Random(seed)
    order = rng.sample(VICTIMS, len(VICTIMS))  # each program dies at least once, then at random
    kills: list[str] = []
    requeued: list[int] = []
    deadline = time.monotonic() + CHAOS_SECONDS
    try:
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.5, 1.5))
            name = order.pop(0) if order else rng.choice(VICTIMS)
            state = sup.state(name)
            if state.state != "RUNNING" or not state.pid:
                continue  # kill what runs: a program still starting is not a crash
            os.kill(state.pid, signal.SIGKILL)
            kills.append(f"{time.monotonic() - deadline + CHAOS_SECONDS:5.1f}s {name} (pid {state.pid})")
            if rng.random() < 0.3:
                # a user clicking Install again meanwhile: the unfinished job is reused
                preset_id = rng.choice(["CHAOS_A", "CHAOS_B"])
                requeued += enqueue_presets(mesh.settings, [preset_id])
                # never two unfinished jobs for one preset
                active = [j.id for j in JobQueue(mesh.settings.queue_db).active() if j.preset_id == preset_id]
                assert len(active) <= 1, active
    finally:
        stop.set()
        runs.join(15)
        prober.join(5)
    print("kills:\n  " + "\n  ".join(kills))

    # every program RUNNING again
    states = sup.wait_for(names, timeout=45)
    assert all(states.get(n) == "RUNNING" for n in names), states

    # no orphan of a killed program still holds a port: each listener belongs to the live program
    owners = {"nginx": [mesh.settings.admin_port, mesh.settings.comfyui_port],
              "admin": [mesh.settings.admin_internal_port], "comfyui": [mesh.settings.comfyui_internal_port]}
    for name, ports in owners.items():
        tree = {sup.state(name).pid}
        tree |= {p.pid for p in psutil.Process(sup.state(name).pid).children(recursive=True)}
        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port in ports:
                assert conn.pid in tree, f"port {conn.laddr.port} is held by pid {conn.pid}, not by {name}"

    from services.programs import stale_nginx

    assert stale_nginx(mesh.settings) == [], "nginx workers orphaned by a killed master still run"

    # the install completes
    queue = JobQueue(mesh.settings.queue_db)
    finish = time.monotonic() + 90
    while time.monotonic() < finish:
        jobs = {j.id: j for j in queue.jobs(100)}
        if all(jobs[i].state == "done" for i in job_ids):
            break
        failed = [(j.state, j.error, [(f.path, f.state, f.error) for f in j.files]) for j in jobs.values()
                  if j.state in ("failed", "cancelled")]
        assert not failed, failed
        time.sleep(0.5)
    else:
        pytest.fail(f"install did not finish: {[j.to_dict() for j in queue.jobs(10)]}")

    # no lost or duplicated jobs: every id handed out is in the queue, finished, and nothing else
    # is; a re-click while a job was unfinished got that job back (checked as it happened), one
    # after it finished got a new job that found its files in place
    every = sorted(set(job_ids) | set(requeued))
    finish = time.monotonic() + 60
    while time.monotonic() < finish and any(j.state != "done" for j in queue.jobs(100)):
        time.sleep(0.5)
    jobs = queue.jobs(100)
    assert sorted(j.id for j in jobs) == every
    assert {j.preset_id for j in jobs} == {"CHAOS_A", "CHAOS_B"}
    for job in jobs:
        assert job.state == "done", job.to_dict()
        paths = [f.path for f in job.files]
        assert sorted(paths) == sorted(rel for rel, _u, _d in files[job.preset_id])
        assert all(f.state == "done" for f in job.files), job.to_dict()

    # every file in models/: right size and sha256, no partial left behind
    models = mesh.settings.models_dir
    present = {str(p.relative_to(models)): p for p in models.rglob("*") if p.is_file()}
    leftovers = [rel for rel in present if rel.endswith((".part", ".lock")) or rel not in expected]
    assert leftovers == [], leftovers
    for rel, digest in expected.items():
        data = Path(present[rel]).read_bytes()
        assert len(data) == sizes[rel], rel
        assert hashlib.sha256(data).hexdigest() == digest, rel

    # workflow runs work again, and the admin answers through nginx
    outcome = ComfyUIClient(mesh.internal_url("comfyui")).run(_prompt(999), timeout=30)
    assert outcome.status == "success"
    session = mesh.login()
    assert session.get(f"{mesh.url('admin')}/api/presets/jobs", timeout=10).status_code == 200
    assert len(kills) >= 6, kills  # ~15 on an idle machine; fewer while programs are still restarting
    figures("chaos", seed=seed, seconds=CHAOS_SECONDS, kills_survived=len(kills),
            kills_by_program={n: sum(f" {n} " in k for k in kills) for n in VICTIMS},
            files_verified=len(expected), bytes_verified=sum(sizes.values()), jobs=len(job_ids),
            reclicks_reused=len(requeued), runs_ok=runs.ok, runs_cut_by_kills=runs.broken,
            front_door_answers=prober.answered, front_door_misses=prober.missed, failures=0)


NGINX_CONF = """daemon off;
worker_processes 2;
pid {run}/nginx.pid;
error_log stderr crit;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {run}/b; proxy_temp_path {run}/p; fastcgi_temp_path {run}/f;
    uwsgi_temp_path {run}/u; scgi_temp_path {run}/s;
    server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok"; }} }}
}}
"""


def test_issue_11_nginx_workers_orphaned_by_a_killed_master_are_cleared(make_settings, tmp_path) -> None:
    """Regression (issue 11): after SIGKILL of nginx's master its workers kept the public ports,
    so every new master failed to bind ("Address already in use") and the old config served on."""
    import shutil
    import subprocess

    from services.programs import clear_stale_nginx, stale_nginx
    from tests.plugins.mesh import free_port

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is not installed (ci/install-deps.sh installs it)"
    port = free_port()
    settings = make_settings(ADMIN_PORT=str(port))
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(run=tmp_path, port=port))
    master = subprocess.Popen([nginx, "-e", "stderr", "-c", str(conf)], stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 10
        # worker_processes 2: wait for both, or an orphan would be missing from `workers`
        while len(psutil.Process(master.pid).children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = [p.pid for p in psutil.Process(master.pid).children()]
        assert len(workers) == 2, workers
        assert stale_nginx(settings) == []  # a live master's workers are not stale
        master.kill()
        master.wait(5)
        time.sleep(0.2)
        assert sorted(stale_nginx(settings)) == sorted(workers)  # every orphan, not one per socket
        assert sorted(clear_stale_nginx(settings)) == sorted(workers)
        assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                       for pid in workers)
        assert not any(c.laddr.port == port and c.status == psutil.CONN_LISTEN
                       for c in psutil.net_connections("tcp"))
    finally:
        if master.poll() is None:
            master.kill()
        for pid in workers:  # orphans are no longer our children: by pid
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass
        if master.poll() is None:
            master.kill()
            master.wait(5)
