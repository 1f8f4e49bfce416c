"""ci.sage: arch lists, MAX_JOBS, the wheel cache, the cuobjdump check, failures that say why.
nvcc, cuobjdump and the torch interpreter are small stand-in scripts."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest

from ci import sage

GIB = 1024**3
COMMIT = "d1a57a546c3d395b1ffcbeecc66d81db76f3b4b5"
CUOBJDUMP_LIST = """
ELF file    1: _qattn_sm80.1.sm_80.cubin
ELF file    2: _qattn_sm80.2.sm_86.cubin
ELF file    3: _qattn_sm80.3.sm_89.cubin
ELF file    4: _qattn_sm80.4.sm_90a.cubin
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8.0 8.6 8.9 9.0", ("8.0", "8.6", "8.9", "9.0")),
        ("9.0;8.0", ("8.0", "9.0")),
        ("12.0, 10.0 8.0", ("8.0", "10.0", "12.0")),
        (["sm_90a", "sm_120a", "8.9+PTX"], ("8.9", "9.0", "12.0")),
        ("9.0 9.0", ("9.0",)),
    ],
)
def test_parse_arch(text, expected):
    assert sage.parse_arch(text) == expected


@pytest.mark.parametrize("text", ["7.5", "8.0 11.0", "", "sm_"])
def test_parse_arch_rejects(text):
    with pytest.raises(sage.SageBuildError):
        sage.parse_arch(text)


def test_arch_env_uses_semicolons_because_setup_py_splits_on_them():
    assert sage.arch_env(("8.0", "8.6", "9.0")) == "8.0;8.6;9.0"


@pytest.mark.parametrize(
    ("free_gib", "cpus", "n_arch", "override", "expected"),
    [
        (64, 16, 4, None, 10),  # 64 / (2 + 4) GiB
        (7, 16, 6, None, 1),  # never below one
        (500, 8, 1, None, 8),  # never above the CPU count
        (16, 4, 4, "2", 2),  # MAX_JOBS wins (CI: MAX_JOBS=2)
        (16, 4, 4, " ", 2),
    ],
)
def test_max_jobs(free_gib, cpus, n_arch, override, expected):
    assert sage.max_jobs(free_gib * GIB, cpus, n_arch, override) == expected


def test_available_memory_reads_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 100 kB\nMemAvailable:    2048 kB\n")
    assert sage.available_memory(meminfo) == 2048 * 1024
    assert sage.available_memory(tmp_path / "missing") == 4 * GIB


def test_nvcc_release():
    out = "nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 12.8, V12.8.93\n"
    assert sage.nvcc_release(out) == "12.8"
    with pytest.raises(sage.SageBuildError):
        sage.nvcc_release("command not found")


def test_parse_cuobjdump():
    assert sage.parse_cuobjdump(CUOBJDUMP_LIST) == {"8.0", "8.6", "8.9", "9.0"}
    assert sage.parse_cuobjdump("ELF file 1: x.sm_120a.cubin\nELF file 2: x.sm_100a.cubin") == {"12.0", "10.0"}
    assert sage.parse_cuobjdump("") == set()


def test_check_arch():
    sage.check_arch({"a.so": {"8.0", "9.0"}, "helper.so": set()}, ["8.0", "9.0"])
    with pytest.raises(sage.SageBuildError, match="missing 9.0, unexpected none"):
        sage.check_arch({"a.so": {"8.0"}}, ["8.0", "9.0"])
    with pytest.raises(sage.SageBuildError, match="unexpected 8.6"):
        sage.check_arch({"a.so": {"8.0", "8.6"}}, ["8.0"])
    with pytest.raises(sage.SageBuildError):
        sage.check_arch({}, ["8.0"])
    with pytest.raises(sage.SageBuildError, match="no library"):
        sage.check_arch({"a.so": set()}, ["8.0"])


def test_key_names_every_part():
    key = sage.BuildKey(COMMIT, "2.9.1+cu128", "12.8", ("8.9", "9.0"))
    assert key.name == "d1a57a546c3d-torch2.9.1+cu128-cuda12.8-sm89-90"
    assert key.name != sage.BuildKey(COMMIT, "2.9.1+cu128", "12.8", ("9.0",)).name


# ---- build and cache, with stand-in tools ---------------------------------------------------------


def script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def make_wheel(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("sageattention/__init__.py", "")
        archive.writestr("sageattention/_qattn_sm80.cpython-313-x86_64-linux-gnu.so", b"\x7fELF")
        archive.writestr("sageattention/_fused.cpython-313-x86_64-linux-gnu.so", b"\x7fELF")
    return path


@pytest.fixture
def tools(tmp_path):
    """A torch interpreter whose `pip wheel` records its environment and makes a wheel."""
    env_file = tmp_path / "build-env.json"
    maker = (
        "import json, os, sys, zipfile\n"
        "out = sys.argv[sys.argv.index('-w') + 1]\n"
        "keys = ('TORCH_CUDA_ARCH_LIST', 'MAX_JOBS', 'EXT_PARALLEL', 'FORCE_CUDA')\n"
        f"json.dump({{k: os.environ.get(k) for k in keys}}, open({str(env_file)!r}, 'w'))\n"
        "z = zipfile.ZipFile(os.path.join(out, 'sageattention-2.2.0-cp313-cp313-linux_x86_64.whl'), 'w')\n"
        "z.writestr('sageattention/_qattn_sm80.so', b'x'); z.close()\n"
    )
    (tmp_path / "maker.py").write_text(maker)
    python = script(
        tmp_path / "python",
        f'if [ "$1" = "-c" ]; then echo 2.9.1+cu128; exit 0; fi\nexec {sys.executable} {tmp_path / "maker.py"} "$@"\n',
    )
    cuobjdump = script(tmp_path / "cuobjdump", f"cat <<'EOF'\n{CUOBJDUMP_LIST}\nEOF\n")
    nvcc = script(tmp_path / "nvcc", "echo 'Cuda compilation tools, release 12.8, V12.8.93'\n")
    source = tmp_path / "src"
    source.mkdir()
    (source / "setup.py").write_text("")
    return {"python": python, "cuobjdump": cuobjdump, "nvcc": nvcc, "source": source, "env": env_file}


def build_kwargs(tools, tmp_path: Path, arch: tuple[str, ...]) -> dict:
    """``sage.build`` on the stand-in tools: CUDA 12.8, out and cache under tmp_path."""
    return dict(python=tools["python"], arch=arch, commit=COMMIT, repo="unused", cuda="12.8",
                out=tmp_path / "out", cache=tmp_path / "cache", source=tools["source"],
                cuobjdump=tools["cuobjdump"])


def test_build_then_cache(tools, tmp_path):
    kwargs = build_kwargs(tools, tmp_path, ("8.0", "8.6", "8.9", "9.0"))
    first = sage.build(**kwargs)
    assert first.built and not first.cached
    assert json.loads(tools["env"].read_text()) == {
        "TORCH_CUDA_ARCH_LIST": "8.0;8.6;8.9;9.0",
        "MAX_JOBS": str(first.max_jobs),
        "EXT_PARALLEL": "1",
        "FORCE_CUDA": "1",
    }
    assert first.found_arch == {"sageattention/_qattn_sm80.so": ["8.0", "8.6", "8.9", "9.0"]}
    assert Path(first.wheel).parent == tmp_path / "out"
    tools["env"].unlink()
    second = sage.build(**kwargs)
    assert second.cached and not tools["env"].exists()  # nothing compiled


def test_a_wheel_missing_an_arch_is_rejected(tools, tmp_path):
    with pytest.raises(sage.SageBuildError, match="missing 10.0 12.0"):
        sage.build(**build_kwargs(tools, tmp_path, ("8.0", "8.6", "8.9", "9.0", "10.0", "12.0")))
    assert not list((tmp_path / "out").glob("*.whl"))


def test_wheel_arch_reads_every_library(tools, tmp_path):
    wheel = make_wheel(tmp_path / "w" / "sageattention-2.2.0-cp313-cp313-linux_x86_64.whl")
    found = sage.wheel_arch(wheel, tools["cuobjdump"])
    assert set(found) == {
        "sageattention/_qattn_sm80.cpython-313-x86_64-linux-gnu.so",
        "sageattention/_fused.cpython-313-x86_64-linux-gnu.so",
    }


def build_argv(tools, tmp_path: Path, *options: str) -> list[str]:
    """``sage build`` with the test's python, out (tmp_path/wheels) and cache, then ``options``."""
    return ["build", "--python", tools["python"], "--out", str(tmp_path / "wheels"),
            "--cache", str(tmp_path / "cache"), *options]


def test_main_allow_failure_writes_the_reason(tools, tmp_path):
    out = tmp_path / "wheels"
    argv = build_argv(tools, tmp_path, "--nvcc", str(tmp_path / "no-nvcc"), "--arch", "9.0",
                      "--repo", "r", "--commit", COMMIT)
    assert sage._main([*argv, "--allow-failure"]) == 0
    status = json.loads((out / "sage-build.json").read_text())
    assert status["built"] is False and "no-nvcc" in status["reason"]
    assert sage._main(argv) == 1


def test_main_refuses_a_different_nvcc(tools, tmp_path):
    out = tmp_path / "wheels"
    argv = build_argv(tools, tmp_path, "--nvcc", tools["nvcc"], "--cuda", "12.6", "--arch", "9.0",
                      "--repo", "r", "--commit", COMMIT)
    assert sage._main(argv) == 1
    assert "nvcc here is CUDA 12.8, not 12.6" in json.loads((out / "sage-build.json").read_text())["reason"]


def test_main_builds_with_the_table_arch_list(tools, tmp_path):
    out = tmp_path / "wheels"
    argv = build_argv(tools, tmp_path, "--nvcc", tools["nvcc"], "--cuobjdump", tools["cuobjdump"],
                      "--source", str(tools["source"]), "--arch", "8.0 8.6 8.9 9.0")
    assert sage._main(argv) == 0
    status = json.loads((out / "sage-build.json").read_text())
    assert status["built"] is True and status["arch"] == ["8.0", "8.6", "8.9", "9.0"] and status["cuda"] == "12.8"


def test_torch_missing_is_one_line(tmp_path):
    with pytest.raises(sage.SageBuildError, match="cannot import torch"):
        sage.torch_version(script(tmp_path / "py", "exit 1\n"))
