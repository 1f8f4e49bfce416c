"""Build the SageAttention wheel for a list of GPU architectures, once per cache key.

    make sage CUDA=12.8 ARCH="8.9 9.0"
    python -m ci.sage build --arch "9.0" [--python /app/venv/bin/python] [--source DIR]

The wheel is a regular wheel (``pip wheel --no-build-isolation``, never an editable install) built
against the torch of ``--python``. The cache key is (SageAttention commit, torch, CUDA, arch list),
so an unchanged combination compiles nothing. After a build the wheel's kernels are listed with
``cuobjdump`` and must hold exactly the architectures asked for.

SageAttention's setup.py reads TORCH_CUDA_ARCH_LIST split on ";" or ",", so a space-separated list
("8.0 8.6", the form torch and this project's table use) would silently build only the first
architecture; the list is therefore handed over with semicolons, and cuobjdump proves the result.

Standard library only: it runs inside the image build before the project is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

# The architectures SageAttention's setup.py knows; anything else is ignored by it without a word.
SUPPORTED_ARCH = ("8.0", "8.6", "8.9", "9.0", "10.0", "12.0", "12.1")
# Memory one nvcc job needs: a base plus one compile thread per target (setup.py passes --threads=8).
GIB = 1024**3
JOB_BASE_GIB = 2.0
JOB_PER_ARCH_GIB = 1.0
DEFAULT_CACHE = Path.home() / ".cache" / "comfypod" / "sage"
STATUS_FILE = "sage-build.json"


class SageBuildError(Exception):
    """The wheel could not be built or does not hold the kernels asked for (one-line message)."""


@dataclass(frozen=True)
class BuildKey:
    commit: str
    torch: str
    cuda: str
    arch: tuple[str, ...]

    @property
    def name(self) -> str:
        sms = "-".join(a.replace(".", "") for a in self.arch)
        torch = re.sub(r"[^A-Za-z0-9.+]", "_", self.torch)
        return f"{self.commit[:12]}-torch{torch}-cuda{self.cuda}-sm{sms}"


def parse_arch(text: str | Sequence[str]) -> tuple[str, ...]:
    """'8.0 9.0', '8.0;9.0' or ['9.0', '8.0'] -> ('8.0', '9.0'); unknown entries are an error."""
    items = re.split(r"[\s;,]+", text.strip()) if isinstance(text, str) else list(text)
    result: set[str] = set()
    for item in filter(None, items):
        value = item.lower().removeprefix("sm_").removesuffix("+ptx").rstrip("af")
        if re.fullmatch(r"\d{2,3}", value):
            value = f"{value[:-1]}.{value[-1]}"
        if value not in SUPPORTED_ARCH:
            raise SageBuildError(f"unknown architecture {item!r}: SageAttention builds {' '.join(SUPPORTED_ARCH)}")
        result.add(value)
    if not result:
        raise SageBuildError("empty architecture list")
    return tuple(sorted(result, key=_arch_number))


def _arch_number(arch: str) -> tuple[int, int]:
    major, minor = arch.split(".")
    return int(major), int(minor)


def arch_env(arch: Sequence[str]) -> str:
    """The TORCH_CUDA_ARCH_LIST value handed to SageAttention's setup.py (semicolons, see above)."""
    return ";".join(arch)


def max_jobs(available_bytes: int, cpus: int, n_arch: int, override: str | None = None) -> int:
    """Parallel nvcc jobs that fit in free memory (MAX_JOBS from the environment wins)."""
    if override and override.strip():
        return max(1, int(override))
    per_job = (JOB_BASE_GIB + JOB_PER_ARCH_GIB * min(n_arch, 8)) * GIB
    return max(1, min(cpus, int(available_bytes // per_job)))


def available_memory(meminfo: Path = Path("/proc/meminfo")) -> int:
    """MemAvailable in bytes (cgroup limits are not consulted; MAX_JOBS overrides)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * GIB


def nvcc_release(output: str) -> str:
    """'... Cuda compilation tools, release 12.8, V12.8.93' -> '12.8'."""
    match = re.search(r"release (\d+\.\d+)", output)
    if not match:
        raise SageBuildError("cannot read the CUDA release from `nvcc --version`")
    return match.group(1)


def parse_cuobjdump(output: str) -> set[str]:
    """Architectures of the cubins `cuobjdump --list-elf` lists: 'sm_90a' -> '9.0'."""
    found = set()
    for number in re.findall(r"\bsm_(\d{2,3})[a-z]?\b", output):
        found.add(f"{number[:-1]}.{number[-1]}")
    return found


Runner = Callable[[list[str]], str]


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def wheel_arch(wheel: Path, cuobjdump: str = "cuobjdump", run: Runner = _run) -> dict[str, set[str]]:
    """Per shared object in the wheel, the SM architectures its cubins are built for."""
    result: dict[str, set[str]] = {}
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.endswith(".so"):
                path = Path(archive.extract(member, tmp))
                result[member] = parse_cuobjdump(run([cuobjdump, "--list-elf", str(path)]))
    return result


def check_arch(found: dict[str, set[str]], expected: Sequence[str]) -> None:
    """Every kernel library holds exactly ``expected``; raise naming the difference otherwise."""
    want = set(expected)
    if not found:
        raise SageBuildError("the wheel holds no compiled library")
    for member, have in sorted(found.items()):
        if not have:
            continue  # a host-only helper library
        if have != want:
            missing = " ".join(sorted(want - have, key=_arch_number)) or "none"
            extra = " ".join(sorted(have - want, key=_arch_number)) or "none"
            raise SageBuildError(f"{member}: kernels for {sorted(have)}; missing {missing}, unexpected {extra}")
    if not any(found.values()):
        raise SageBuildError("no library in the wheel holds GPU kernels")


def torch_version(python: str, run: Runner = _run) -> str:
    try:
        return run([python, "-c", "import torch; print(torch.__version__)"]).strip().splitlines()[-1]
    except (subprocess.CalledProcessError, OSError, IndexError) as err:
        raise SageBuildError(f"{python} cannot import torch: install torch first or pass --python") from err


def fetch_source(repo: str, commit: str, dest: Path, run: Runner = _run) -> Path:
    """A shallow checkout of exactly ``commit`` (GitHub serves any commit by id)."""
    if (dest / "setup.py").is_file():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    run(["git", "-C", str(dest), "init", "-q"])
    run(["git", "-C", str(dest), "fetch", "-q", "--depth", "1", repo, commit])
    run(["git", "-C", str(dest), "checkout", "-q", "FETCH_HEAD"])
    return dest


def build_wheel(source: Path, out: Path, python: str, arch: Sequence[str], jobs: int, log: Path) -> Path:
    env = dict(os.environ)
    env.update(
        FORCE_CUDA="1",
        MAX_JOBS=str(jobs),
        EXT_PARALLEL="1",  # setup.py would otherwise run MAX_JOBS extensions x MAX_JOBS nvcc each
        TORCH_CUDA_ARCH_LIST=arch_env(arch),
    )
    out.mkdir(parents=True, exist_ok=True)
    argv = [python, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-w", str(out), str(source)]
    with log.open("w") as handle:
        code = subprocess.run(argv, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SageBuildError(f"pip wheel failed (exit {code}): {_last_error(log)}")
    wheels = sorted(out.glob("sageattention-*.whl"))
    if not wheels:
        raise SageBuildError(f"pip wheel made no sageattention wheel in {out}")
    return wheels[-1]


def _last_error(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if re.search(r"error|fatal|Error", line):
            return line[:300]
    return lines[-1][:300] if lines else "no output"


@dataclass
class Result:
    built: bool
    reason: str
    wheel: str | None
    commit: str
    torch: str
    cuda: str
    arch: list[str]
    found_arch: dict[str, list[str]]
    max_jobs: int
    cached: bool
    seconds: float


def build(
    *,
    python: str,
    arch: Sequence[str],
    commit: str,
    repo: str,
    cuda: str,
    out: Path,
    cache: Path,
    source: Path | None = None,
    cuobjdump: str = "cuobjdump",
    check: bool = True,
) -> Result:
    started = time.monotonic()
    torch = torch_version(python)
    key = BuildKey(commit=commit, torch=torch, cuda=cuda, arch=tuple(arch))
    slot = cache / key.name
    jobs = max_jobs(available_memory(), os.cpu_count() or 1, len(arch), os.environ.get("MAX_JOBS"))
    cached = sorted(slot.glob("sageattention-*.whl"))
    if cached:
        wheel = cached[-1]
    else:
        cache.mkdir(parents=True, exist_ok=True)
        src = source or fetch_source(repo, commit, cache / "src" / commit[:12])
        staging = Path(tempfile.mkdtemp(prefix="sage-", dir=cache))
        print(
            f"ci.sage: building SageAttention {commit[:12]} for {' '.join(arch)} "
            f"(torch {torch}, CUDA {cuda}, MAX_JOBS={jobs})",
            flush=True,
        )
        wheel = build_wheel(src, staging, python, arch, jobs, cache / f"{key.name}.log")
        slot.mkdir(parents=True, exist_ok=True)
        wheel = Path(shutil.move(str(wheel), slot / wheel.name))
        shutil.rmtree(staging, ignore_errors=True)
    found = wheel_arch(wheel, cuobjdump) if check else {}
    if check:
        check_arch(found, arch)
    out.mkdir(parents=True, exist_ok=True)
    final = Path(shutil.copy2(wheel, out / wheel.name))
    return Result(
        built=True,
        reason="",
        wheel=str(final),
        commit=commit,
        torch=torch,
        cuda=cuda,
        arch=list(arch),
        found_arch={member: sorted(have, key=_arch_number) for member, have in found.items()},
        max_jobs=jobs,
        cached=bool(cached),
        seconds=round(time.monotonic() - started, 1),
    )


def _defaults() -> tuple[str, str, dict[str, str]]:
    from ci import matrix

    table = matrix.load()
    rows = {row["cuda"]: row["sage_arch"] for row in table.rows}
    return table.variable("SAGE_REPO"), table.variable("SAGE_COMMIT"), rows


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.sage", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build (or take from the cache) the wheel and check its kernels")
    b.add_argument("--python", default=sys.executable, help="interpreter whose torch the wheel is built for")
    b.add_argument("--cuda", help="the CUDA version expected of nvcc (default: nvcc's own)")
    b.add_argument("--arch", help='space-separated SM list, e.g. "8.9 9.0" (default: the table row)')
    b.add_argument("--repo")
    b.add_argument("--commit")
    b.add_argument("--source", type=Path, help="an existing SageAttention checkout")
    b.add_argument("--out", type=Path, default=Path("dist/sage"))
    b.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    b.add_argument("--nvcc", default="nvcc")
    b.add_argument("--cuobjdump", default="cuobjdump")
    b.add_argument("--no-check", action="store_true", help="skip the cuobjdump check")
    b.add_argument(
        "--allow-failure",
        action="store_true",
        help="on failure write the reason to OUT/sage-build.json and exit 0 (the image then uses PyTorch attention)",
    )
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    status = args.out / STATUS_FILE
    try:
        repo, commit, rows = (args.repo, args.commit, {}) if args.repo and args.commit else _defaults()
        repo, commit = args.repo or repo, args.commit or commit
        nvcc = nvcc_release(_run([args.nvcc, "--version"]))
        cuda = args.cuda or nvcc
        if cuda != nvcc:
            raise SageBuildError(f"nvcc here is CUDA {nvcc}, not {cuda}: put CUDA {cuda}'s nvcc first on PATH")
        if args.arch:
            arch = parse_arch(args.arch)
        elif cuda in rows:
            arch = parse_arch(rows[cuda])
        else:
            raise SageBuildError(f"CUDA {cuda} is not in docker/cuda-matrix.json: pass --arch (ARCH=...)")
        result = build(
            python=args.python,
            arch=arch,
            commit=commit,
            repo=repo,
            cuda=cuda,
            out=args.out,
            cache=args.cache,
            source=args.source,
            cuobjdump=args.cuobjdump,
            check=not args.no_check,
        )
    except (SageBuildError, subprocess.CalledProcessError, OSError) as err:
        reason = str(err) if isinstance(err, SageBuildError) else f"{type(err).__name__}: {err}"
        status.write_text(json.dumps({"built": False, "reason": reason}, indent=2) + "\n")
        print(f"ci.sage: SageAttention not built: {reason}", file=sys.stderr)
        return 0 if args.allow_failure else 1
    status.write_text(json.dumps(asdict(result), indent=2) + "\n")
    state = "from the cache" if result.cached else f"in {result.seconds}s"
    print(f"ci.sage: {Path(result.wheel or '').name} {state}; kernels {' '.join(result.arch)} checked", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
