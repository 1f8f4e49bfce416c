"""services/pyenv.py: one environment that survives restarts.

The pod here is real except for size: an app dir with its own venv (the image), a ComfyUI
stand-in that loads custom nodes like ComfyUI, a workspace (the volume), a PEP 503 index on
loopback (PyPI) and the real ``comfypod`` CLI run by the image's interpreter.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import psutil
import pytest
import requests

from services import constraints, nodes, pyenv
from tests.support import pyenv_kit

NODE_BODY = "import cpplain\nVALUE = cpplain.VERSION\nNODE_CLASS_MAPPINGS = {}\n"


def layer_site(pod) -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return pod.workspace / pyenv.LAYER_DIR / "lib" / version / "site-packages"


def layer_dists(pod) -> list[str]:
    site = layer_site(pod)
    return sorted(p.name for p in site.glob("*.dist-info")) if site.is_dir() else []


def image_version(pod, module: str) -> str:
    code = f"import {module}; print({module}.VERSION, {module}.__file__)"
    return subprocess.run([str(pod.python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


# ---- the environment every program gets ----------------------------------------------------------


def fake_venv(app: Path) -> Path:
    (app / "venv" / "bin").mkdir(parents=True)
    (app / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    python = app / "venv" / "bin" / "python"
    python.symlink_to(sys.executable)
    return python


def test_environment_for_the_image_venv(make_settings, tmp_path):
    python = fake_venv(tmp_path / "app")
    settings = make_settings(APP_DIR=str(tmp_path / "app"), COMFYUI_PYTHON=str(python))
    assert pyenv.layer_attached(settings)
    env = pyenv.environment(settings, {"PATH": "/usr/bin:/bin", "JUPYTER_PATH": "/opt/jupyter"})
    path = env["PATH"].split(":")
    assert path[0] == str(python.parent)
    assert path[path.index(str(settings.venv_bin)) + 1] == str(settings.workspace / ".venv-overlay" / "bin")
    assert path[-3:] == ["/usr/bin", "/bin", "/usr/sbin"]
    assert env["PIP_PREFIX"] == str(settings.workspace / ".venv-overlay")
    assert env["PIP_CONSTRAINT"] == str(constraints.constraints_file(settings))
    assert env["PIP_CACHE_DIR"] == str(settings.workspace / ".cache" / "pip")
    assert env["JUPYTER_PATH"] == f"{settings.run_dir / 'jupyter'}:/opt/jupyter"


def test_a_foreign_interpreter_is_left_alone(settings):
    """The test venv is not APP_DIR/venv: no layer, no .pth written into it."""
    assert not pyenv.layer_attached(settings)
    env = pyenv.environment(settings, {"PATH": "/usr/bin"})
    assert "PIP_PREFIX" not in env and "PIP_CONSTRAINT" in env
    summary = pyenv.prepare_environment(settings)
    assert "pth" not in summary
    assert not (Path(sysconfig.get_paths()["purelib"]) / pyenv.PTH_NAME).exists()
    assert pyenv.sync_requirements(settings) == []


# ---- the start-up step ---------------------------------------------------------------------------


def test_prepare_environment(pyenv_pod, caplog):
    pod = pyenv_pod(constraints="cptinyhello==1.0\n", image=(("cptinyhello", "1.0"),))
    settings = pod.settings()
    with caplog.at_level(logging.INFO, logger="comfypod.pyenv"):
        summary = pyenv.prepare_environment(settings)
    pth = Path(summary["pth"])
    assert pth.parent == pyenv_kit.site_packages(pod.python)
    assert str(layer_site(pod)) in pth.read_text() and "site.addsitedir" in pth.read_text()
    text = Path(summary["constraints"]).read_text()
    assert "cptinyhello==1.0" in text
    kernel = json.loads(Path(summary["kernel"]).read_text())
    assert kernel["argv"][0] == str(pod.python)
    assert summary["versions"]["comfyui"] == "0.3.99"
    messages = caplog.text
    assert "ComfyUI version: 0.3.99" in messages
    assert "ComfyUI frontend package: not installed" in messages
    assert "torch: not installed" in messages
    state = pyenv.load_state(settings)
    assert state["versions"]["comfyui"] == "0.3.99"
    # the layer comes after the image's own packages in every interpreter of the image
    layer_site(pod).mkdir(parents=True)
    code = "import sys, json; print(json.dumps(sys.path))"
    seen = json.loads(subprocess.run([str(pod.python), "-c", code], capture_output=True, text=True).stdout)
    assert seen.index(str(layer_site(pod))) > seen.index(str(pth.parent))


def test_version_lines_name_the_cuda_build():
    lines = pyenv.version_lines({"comfyui": "0.3.40", "frontend": "1.23.4", "torch": "2.7.1+cu128",
                                 "cuda": "12.8", "python": "3.12.3", "interpreter": "/app/venv/bin/python"})
    assert lines == ["ComfyUI version: 0.3.40", "ComfyUI frontend package: 1.23.4", "torch: 2.7.1+cu128 (CUDA 12.8)",
                     "Python 3.12.3: /app/venv/bin/python"]


def test_an_old_copy_of_an_image_package_in_the_layer_is_removed(pyenv_pod, wheel_index):
    """A newer image never runs what an older one left on the volume: the image's copy wins and
    the layer's is dropped at start (the frontend package in particular)."""
    pod = pyenv_pod(image=(("cptinyhello", "2.0"),))
    site = layer_site(pod)
    site.mkdir(parents=True)
    pyenv_kit.unpack_wheel(wheel_index.wheel("cptinyhello", "1.0"), site)
    frontend = pyenv_kit.build_wheel(pod.root / "wheels", "comfyui-frontend-package", "1.0.0",
                                     files={"comfyui_frontend_package/__init__.py": ""})
    pyenv_kit.unpack_wheel(frontend, site)
    pyenv.prepare_environment(pod.settings())
    assert layer_dists(pod) == []
    assert not (site / "cptinyhello").exists() and not (site / "comfyui_frontend_package").exists()
    assert image_version(pod, "cptinyhello").startswith("2.0 ")


# ---- acceptance: a node survives a new container, offline ------------------------------------------


def test_node_installed_yesterday_imports_in_a_new_container_without_network(pyenv_pod, wheel_index, tmp_path):
    pod = pyenv_pod()
    repo = tmp_path / "repos" / "ComfyUI-Hello"
    commit = pyenv_kit.make_node_repo(repo, NODE_BODY, requirements="cpplain\n")
    env = pod.up()  # every start-up step, as `comfypod up` runs them
    assert env["PIP_PREFIX"] == str(pod.workspace / ".venv-overlay")
    assert Path(env["PIP_CONSTRAINT"]).is_file()
    assert env["PATH"].split(":")[0] == str(pod.python.parent)
    out = pod.comfypod("nodes", "install", f"file://{repo}").stdout
    assert f"installed ComfyUI-Hello at {commit}" in out
    assert "node ComfyUI-Hello: installed cpplain==1.3 (1 downloaded)" in out
    first = pod.start_comfyui()
    assert first["nodes"]["ComfyUI-Hello"] == {"ok": True, "error": "", "value": "'1.3'"}
    assert "node requirements: nothing changed" in first["log"]

    # a new container from the image: fresh /app and venv, same volume, and no index to reach
    pod.recreate()
    wheel_index.stop()
    hits = len(wheel_index.hits)
    pod.up(PIP_NO_INDEX="1")
    second = pod.start_comfyui(PIP_NO_INDEX="1")
    assert second["nodes"]["ComfyUI-Hello"] == {"ok": True, "error": "", "value": "'1.3'"}
    assert "node requirements: nothing changed" in second["log"]
    assert "installing" not in second["log"]
    assert second["executable"] == str(pod.python)
    assert len(wheel_index.hits) == hits
    listed = json.loads(pod.comfypod("nodes", "list", "--json").stdout)["nodes"]
    assert [(n["name"], n["commit"], n["requirements"], n["packages"]) for n in listed] == [
        ("ComfyUI-Hello", commit, "ok", ["cpplain==1.3"])]


def test_changed_requirements_are_installed_at_start_and_the_old_version_goes(pyenv_pod, tmp_path):
    pod = pyenv_pod()
    repo = tmp_path / "repos" / "Hello"
    pyenv_kit.make_node_repo(repo, NODE_BODY, requirements="cpplain\n")
    pod.start()
    pod.comfypod("nodes", "install", f"file://{repo}")
    assert layer_dists(pod) == ["cpplain-1.3.dist-info"]
    # the user (or ComfyUI-Manager) updates the node: its requirements change
    (pod.workspace / "custom_nodes" / "Hello" / "requirements.txt").write_text("cpplain==1.2\n")
    report = pod.start_comfyui()
    assert "node Hello: requirements.txt changed" in report["log"]
    assert "node Hello: installed cpplain==1.2 (1 downloaded)" in report["log"]
    assert report["nodes"]["Hello"]["value"] == "'1.2'"
    assert layer_dists(pod) == ["cpplain-1.2.dist-info"]


# ---- acceptance: a pinned package cannot be replaced -------------------------------------------------


@pytest.mark.parametrize(
    ("requirements", "asked"),
    [("cptinyhello==2.0\n", "asks for cptinyhello==2.0"), ("cpnodedep\n", "cptinyhello==2.0 (via cpnodedep 0.5)")],
)
def test_a_node_asking_for_another_pinned_version_is_refused(pyenv_pod, tmp_path, requirements, asked):
    pod = pyenv_pod(constraints="cptinyhello==1.0\n", image=(("cptinyhello", "1.0"),))
    repo = tmp_path / "repos" / "Greedy"
    pyenv_kit.make_node_repo(repo, requirements=requirements)
    pod.start()
    result = pod.comfypod("nodes", "install", f"file://{repo}", check=False)
    assert result.returncode == 10, result.stdout + result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("comfypod: Greedy was not installed: requirements refused:")
    assert asked in message and "the image pins cptinyhello==1.0 (constraints file)" in message
    assert image_version(pod, "cptinyhello").startswith("1.0 ")
    assert layer_dists(pod) == []
    assert not (pod.workspace / "custom_nodes" / "Greedy").exists()
    assert list((pod.workspace / "custom_nodes").iterdir()) == []


def test_another_version_of_an_unpinned_image_package_keeps_the_images(pyenv_pod, tmp_path):
    """Installing it into the layer would only hide it behind the image's copy: it is skipped and
    the node says so."""
    pod = pyenv_pod(image=(("cptinyhello", "1.0"),))
    repo = tmp_path / "repos" / "Wants2"
    pyenv_kit.make_node_repo(repo, requirements="cptinyhello==2.0\n")
    pod.start()
    out = pod.comfypod("nodes", "install", str(repo)).stdout
    assert "kept the image's cptinyhello 1.0 (asked for 2.0)" in out
    assert layer_dists(pod) == []
    (node,) = nodes.list_nodes(pod.settings())
    assert (node.requirements, node.message) == ("ok", "kept the image's cptinyhello 1.0 (asked for 2.0)")


def test_a_terminal_pip_uses_the_constraints_and_the_layer(pyenv_pod):
    """What a code-server terminal, a notebook's %pip or ComfyUI-Manager runs: plain pip in the
    programs' environment."""
    pod = pyenv_pod(constraints="cptinyhello==1.0\n", image=(("cptinyhello", "1.0"),))
    env = pod.start()
    pip = [str(pod.python), "-m", "pip", "install", "--no-input"]
    refused = subprocess.run([*pip, "cptinyhello==2.0"], env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "(constraint) cptinyhello==1.0" in refused.stdout + refused.stderr
    added = subprocess.run([*pip, "cpplain==1.2"], env=env, capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    assert layer_dists(pod) == ["cpplain-1.2.dist-info"]
    assert image_version(pod, "cpplain").startswith(f"1.2 {layer_site(pod)}")


def test_a_node_whose_requirements_fail_is_reported_and_comfyui_starts(pyenv_pod):
    pod = pyenv_pod()
    node = pod.workspace / "custom_nodes" / "Broken"
    node.mkdir(parents=True)
    (node / "__init__.py").write_text("import cpmissing\n")
    (node / "requirements.txt").write_text("cpmissing==9\n")
    pod.start()
    report = pod.start_comfyui()
    assert "node Broken: requirements failed: " in report["log"]
    assert "No matching distribution found for cpmissing==9" in report["log"]
    assert report["nodes"]["Broken"]["ok"] is False
    state = pyenv.node_states(pod.settings())["Broken"]
    assert state.status == "failed" and "cpmissing==9" in state.message
    (listed,) = nodes.list_nodes(pod.settings())
    assert listed.requirements == "failed" and "cpmissing" in listed.message
    assert listed.imported == "unknown"  # ComfyUI's log is supervisord's file; here it went to the test


def test_sync_skips_image_nodes_and_unchanged_nodes(pyenv_pod, monkeypatch):
    pod = pyenv_pod()
    settings = pod.settings()
    baked = pod.app / "custom_nodes_baked" / "FromImage"
    baked.mkdir(parents=True)
    (baked / "requirements.txt").write_text("cpmissing\n")
    pod.start()
    assert (pod.workspace / "custom_nodes" / "FromImage").is_symlink()
    calls = []
    monkeypatch.setattr(pyenv, "install_requirements", lambda *a, **k: calls.append(a) or None)
    assert pyenv.sync_requirements(settings) == []
    assert calls == []


# ---- acceptance: one interpreter for every program ------------------------------------------------


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ValueError, requests.RequestException, psutil.Error) as err:
            last = err
        time.sleep(0.2)
    raise AssertionError(f"{what} not ready in {timeout}s ({last})")


@pytest.mark.e2e
def test_comfyui_jupyter_kernel_and_terminal_see_one_interpreter(pyenv_pod, mesh_factory, tmp_path):
    pod = pyenv_pod()
    node = pod.workspace / "custom_nodes" / "Probe"
    node.mkdir(parents=True)
    (node / "__init__.py").write_text("import sys\nVALUE = sys.executable\n")
    mesh = mesh_factory(
        timeout=90,
        ENABLE_ADMIN="false", ENABLE_NGINX="false", ENABLE_DOWNLOADER="false", ENABLE_JUPYTER="true",
        **{k: pod.env[k] for k in ("APP_DIR", "COMFYUI_DIR", "COMFYUI_PYTHON", "PIP_CONFIG_FILE", "PIP_INDEX_URL")},
    )
    python = str(pod.python)
    layer = str(layer_site(pod))
    layer_site(pod).mkdir(parents=True, exist_ok=True)

    # ComfyUI (the stand-in started by supervisord's comfyui program)
    report_file = pod.workspace / "output" / "pyenv-report.json"
    comfy = _wait(lambda: json.loads(report_file.read_text()), 60, "ComfyUI's report")
    assert comfy["executable"] == python
    assert comfy["nodes"]["Probe"]["value"] == repr(python)
    assert comfy["env"]["PIP_PREFIX"] == str(pod.workspace / pyenv.LAYER_DIR)

    # a terminal in code-server: a shell with the code-server program's environment
    states = {s.name: s for s in mesh.supervisor.states()}
    env = psutil.Process(states["code-server"].pid).environ()
    shell = subprocess.run(
        ["bash", "-c", 'command -v python; command -v pip; python -c "import sys, json; print(json.dumps(sys.path))"'],
        env=env, capture_output=True, text=True, cwd=pod.workspace, check=True,
    ).stdout.splitlines()
    assert shell[0] == python and shell[1] == str(pod.python.parent / "pip")
    assert layer in json.loads(shell[2])
    assert env["PIP_CONSTRAINT"] == comfy["env"]["PIP_CONSTRAINT"]

    # a notebook kernel started by the real JupyterLab of the jupyter program
    base = mesh.internal_url("jupyter")
    specs = _wait(lambda: requests.get(f"{base}/api/kernelspecs", timeout=5).json(), 60, "JupyterLab")
    assert specs["default"] == "python3"
    assert specs["kernelspecs"]["python3"]["spec"]["argv"][0] == python
    kernel = requests.post(f"{base}/api/kernels", json={"name": "python3"}, timeout=30).json()
    jupyter = psutil.Process(states["jupyter"].pid)

    def kernel_process():
        for child in jupyter.children(recursive=True):
            if "ipykernel_launcher" in " ".join(child.cmdline()):
                return child
        return None

    process = _wait(kernel_process, 30, "the kernel process")
    assert process.cmdline()[0] == python
    assert process.environ()["PIP_PREFIX"] == comfy["env"]["PIP_PREFIX"]
    requests.delete(f"{base}/api/kernels/{kernel['id']}", timeout=10)
