"""The real supervisord mesh started by `comfypod up` (issue 3's acceptance tests)."""

import os
import signal
import time

import psutil
import pytest
import requests

pytestmark = pytest.mark.e2e


def test_enabled_programs_run_and_disabled_stay_stopped(mesh_factory):
    mesh = mesh_factory(ENABLE_CODE_SERVER="false")
    states = {p.name: p.state for p in mesh.supervisor.states()}
    for name in ("comfyui", "admin", "downloader", "nginx"):
        assert states[name] == "RUNNING", states
    assert states["code-server"] == "STOPPED"
    assert states["jupyter"] == "STOPPED"
    assert requests.get(f"{mesh.internal_url('admin')}/healthz", timeout=5).status_code == 200
    # logs land in the workspace, one file per program
    for name in ("comfyui", "admin", "downloader", "nginx"):
        assert (mesh.settings.logs_dir / f"{name}.log").exists()


def test_killed_comfyui_is_restarted_within_seconds(mesh_factory):
    mesh = mesh_factory(ENABLE_CODE_SERVER="false", ENABLE_NGINX="false")
    before = mesh.supervisor.state("comfyui").pid
    os.kill(before, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = mesh.supervisor.state("comfyui")
        if state.running and state.pid != before:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"comfyui not restarted: {mesh.supervisor.state('comfyui')}")
    assert time.monotonic() - (deadline - 10) < 10


def test_supervisorctl_and_ctl_work(mesh_factory):
    import subprocess
    import sys
    from pathlib import Path

    mesh = mesh_factory(ENABLE_CODE_SERVER="false", ENABLE_NGINX="false")
    comfypod = str(Path(sys.executable).parent / "comfypod")
    result = subprocess.run([comfypod, "ctl", "restart", "comfyui"], env=mesh.env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "comfyui: started" in result.stdout
    result = subprocess.run([comfypod, "status"], env=mesh.env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "comfyui" in result.stdout and "RUNNING" in result.stdout


def test_sigterm_leaves_no_process(mesh_factory):
    mesh = mesh_factory()
    tree = mesh.descendants | {mesh.process.pid}
    assert len(tree) >= 5
    code = mesh.stop()
    assert code == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and mesh.alive_descendants():
        time.sleep(0.2)
    leftovers = [(p.pid, p.name()) for p in mesh.alive_descendants()]
    assert leftovers == []
    assert not psutil.pid_exists(mesh.process.pid) or psutil.Process(mesh.process.pid).status() == "zombie"


def test_missing_binary_does_not_take_others_down(mesh_factory, tmp_path):
    mesh = mesh_factory(COMFYUI_DIR=str(tmp_path / "no-comfyui"), ENABLE_NGINX="false")
    states = {p.name: p.state for p in mesh.supervisor.states()}
    assert states["comfyui"] == "STOPPED"
    assert states["admin"] == "RUNNING" and states["downloader"] == "RUNNING"
    assert "comfyui" in mesh.output() and "make comfyui" in mesh.output()


def test_plain_supervisorctl_finds_the_config(mesh_factory, tmp_path):
    """`supervisorctl status` / `restart comfyui` with no flags, as inside the container."""
    import subprocess
    import sys
    from pathlib import Path

    from services.startup import link_default_config

    mesh = mesh_factory(ENABLE_CODE_SERVER="false", ENABLE_NGINX="false")
    prefix = tmp_path / "venv"  # stands in for /app/venv: bin/supervisorctl and etc/supervisord.conf
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "supervisorctl").symlink_to(Path(sys.executable).parent / "supervisorctl")
    link_default_config(mesh.settings, prefix=prefix)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ctl = str(prefix / "bin" / "supervisorctl")
    result = subprocess.run([ctl, "status"], cwd=elsewhere, capture_output=True, text=True, timeout=30)
    assert "comfyui" in result.stdout and "RUNNING" in result.stdout, result.stdout + result.stderr
    before = mesh.supervisor.state("comfyui").pid
    result = subprocess.run([ctl, "restart", "comfyui"], cwd=elsewhere, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "comfyui: started" in result.stdout, result.stdout + result.stderr
    assert mesh.supervisor.state("comfyui").pid != before
