"""Test-only builders for the Python-environment tests: hand-made wheels, a PEP 503 index served
from a thread (a stand-in for PyPI), a fake image (an app dir with its own venv) and git repos."""

from __future__ import annotations

import base64
import hashlib
import html
import http.server
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STANDIN = Path(__file__).resolve().parent / "pyenv_comfyui"


# ---- wheels -------------------------------------------------------------------------------------


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def build_wheel(folder: Path, name: str, version: str, files: dict[str, str] | None = None,
                requires: tuple[str, ...] = ()) -> Path:
    """A pure-python wheel ``name-version-py3-none-any.whl``; by default a module named like the
    project whose ``VERSION`` is the version."""
    dist = name.replace("-", "_")
    module = dist.lower()
    files = files if files is not None else {f"{module}/__init__.py": f"VERSION = {version!r}\n"}
    info = f"{dist}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {req}\n" for req in requires)
    contents = dict(files)
    contents[f"{info}/METADATA"] = metadata
    contents[f"{info}/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: comfypod-tests\nRoot-Is-Purelib: true\n"
                                 "Tag: py3-none-any\n")
    contents[f"{info}/top_level.txt"] = module + "\n"
    record = [f"{path},{_record_hash(text.encode())},{len(text.encode())}" for path, text in contents.items()]
    record.append(f"{info}/RECORD,,")
    contents[f"{info}/RECORD"] = "\n".join(record) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in contents.items():
            archive.writestr(member, text)
    return path


def unpack_wheel(wheel: Path, site_packages: Path) -> None:
    """Install a pure wheel by unpacking it (what the image's build did for its own packages)."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site_packages)
        info = next(n.split("/")[0] for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    (site_packages / info / "INSTALLER").write_text("test\n")


# ---- a PEP 503 index on loopback ------------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # noqa: D401 - silence the test output
        pass


@dataclass
class WheelIndex:
    """``add(name, version, ...)`` builds a wheel and lists it; ``url`` is the ``--index-url``."""

    root: Path
    server: http.server.ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None
    hits: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/simple/"

    def add(self, name: str, version: str, **kwargs) -> Path:
        wheel = build_wheel(self.root / "files", name, version, **kwargs)
        self._write_page(name)
        return wheel

    def wheel(self, name: str, version: str) -> Path:
        return self.root / "files" / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"

    def _write_page(self, name: str) -> None:
        project = name.lower().replace("_", "-")
        prefix = name.replace("-", "_") + "-"
        links = []
        for wheel in sorted((self.root / "files").glob("*.whl")):
            if wheel.name.lower().startswith(prefix.lower()):
                digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
                links.append(f'<a href="../../files/{html.escape(wheel.name)}#sha256={digest}">{wheel.name}</a><br>')
        page = self.root / "simple" / project / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text("<!doctype html><html><body>\n" + "\n".join(links) + "\n</body></html>\n")

    def start(self) -> WheelIndex:
        (self.root / "simple").mkdir(parents=True, exist_ok=True)
        hits = self.hits
        root = str(self.root)

        class Handler(_Quiet):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=root, **kwargs)

            def do_GET(self):  # noqa: N802
                hits.append(self.path)
                super().do_GET()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


# ---- a fake image: APP_DIR with its own venv -------------------------------------------------------


def dev_site_packages() -> str:
    return sysconfig.get_paths()["purelib"]


def make_image(app_dir: Path, comfyui_dir: Path | None = None, constraints: str | None = None,
               packages: tuple[Path, ...] = ()) -> Path:
    """Build ``app_dir`` like the image's /app: ``venv/`` (a real venv that also sees the test
    venv's packages, standing in for what the image installed), the data folders linked from the
    repository, an optional baked ``constraints.txt`` and wheels unpacked into the venv.
    Returns the venv's python."""
    app_dir.mkdir(parents=True, exist_ok=True)
    venv = app_dir / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # the image's "own" packages: this test venv (pip, ipykernel, comfypod itself) after the venv's
    (site / "_comfypod_test_image.pth").write_text(f"import site; site.addsitedir({dev_site_packages()!r})\n")
    for wheel in packages:
        unpack_wheel(wheel, site)
    pip = venv / "bin" / "pip"  # the image's venv has its own pip script, like any venv
    pip.write_text(f"#!{python}\nimport sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n")
    pip.chmod(0o755)
    for name in ("supervisor.d", "nginx", "presets", "docker"):
        if (ROOT / name).exists() and not (app_dir / name).exists():
            (app_dir / name).symlink_to(ROOT / name)
    if constraints is not None:
        (app_dir / "constraints.txt").write_text(constraints)
    if comfyui_dir is not None:
        make_comfyui(comfyui_dir)
    return python


def make_comfyui(comfyui_dir: Path, version: str = "0.3.99") -> Path:
    """A ComfyUI stand-in folder: main.py loads custom nodes like ComfyUI and reports what it saw."""
    comfyui_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(STANDIN / "main.py", comfyui_dir / "main.py")
    (comfyui_dir / "comfyui_version.py").write_text(f'__version__ = "{version}"\n')
    (comfyui_dir / "custom_nodes").mkdir(exist_ok=True)
    return comfyui_dir


def site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    return Path(out)


# ---- git repositories ------------------------------------------------------------------------------

GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    result = subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env)
    return result.stdout.strip()


def make_node_repo(repo: Path, module_body: str = "", requirements: str | None = None,
                   extra: dict[str, str] | None = None) -> str:
    """A custom node as a git repository with one commit; returns the commit."""
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main")
    body = module_body or "NODE_CLASS_MAPPINGS = {}\n"
    (repo / "__init__.py").write_text(body)
    if requirements is not None:
        (repo / "requirements.txt").write_text(requirements)
    for rel, text in (extra or {}).items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    return git(repo, "rev-parse", "HEAD")


def commit_change(repo: Path, rel: str, text: str, message: str = "change") -> str:
    (repo / rel).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")
