"""Facts for the doctor: the image's build facts, the tag table, SageAttention's version, the self-test.

Verdicts of the SageAttention self-test are cached in ``<state_dir>/doctor.json`` keyed by GPU
name, driver and SageAttention version, so the test runs once per combination (a driver update
or a new image re-runs it).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from services import sage_check
from services.doctor import ImageFacts, Tag, Verdict
from services.files import write_atomic
from services.settings import Settings

log = logging.getLogger("comfypod.doctor")

IMAGE_FILE = "image.json"
MATRIX_FILE = Path("docker") / "cuda-matrix.json"
CACHE_FILE = "doctor.json"
SELF_TEST_TIMEOUT = 300.0
_VERSION_PROBE = "import importlib.metadata as m; print(m.version('sageattention'))"


def load_image(settings: Settings) -> ImageFacts | None:
    """``APP_DIR/image.json``, or None outside a ComfyPod image (or when it cannot be read)."""
    path = settings.app_dir / IMAGE_FILE
    try:
        return ImageFacts.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError) as err:
        log.warning("cannot read %s: %s", path, err)
        return None


def load_tags(settings: Settings) -> list[Tag]:
    """The image tags the project builds (``APP_DIR/docker/cuda-matrix.json``), [] when absent."""
    path = settings.app_dir / MATRIX_FILE
    try:
        data = json.loads(path.read_text())
        variables = data["variable"]
        python = variables["PYTHON_VERSION"]["default"]
        rows = variables["CUDA_MATRIX"]["default"]
        return [
            Tag(
                cuda=row["cuda"],
                name=f"base-py{python}-{row['tag']}",
                torch_arch=tuple(row["torch_arch"].split()),
                sage_arch=tuple(row["sage_arch"].split()),
                min_driver=row["min_driver"],
            )
            for row in rows
        ]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("cannot read %s: %s", path, err)
        return []


def sage_version(settings: Settings) -> str | None:
    """The installed sageattention version in ComfyUI's interpreter, or None."""
    python = str(settings.comfyui_python)
    if python == sys.executable:
        try:
            return metadata.version("sageattention")
        except metadata.PackageNotFoundError:
            return None
    try:
        out = subprocess.run([python, "-c", _VERSION_PROBE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("cannot ask %s for sageattention's version: %s", python, err)
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def run_self_test(settings: Settings, timeout: float = SELF_TEST_TIMEOUT) -> dict[str, Any]:
    """Run services/sage_check.py with ComfyUI's interpreter; a crash or timeout is a failed result."""
    argv = [str(settings.comfyui_python), sage_check.__file__]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "reason": f"the self-test did not finish within {timeout:.0f}s"}
    except OSError as err:
        return {"ok": False, "reason": f"cannot run {argv[0]}: {err.strerror}"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
    return {"ok": False, "reason": f"the self-test exited with {done.returncode}: {tail}"}


def _cache_path(settings: Settings) -> Path:
    return settings.state_dir / CACHE_FILE


def read_cache(settings: Settings) -> dict[str, Any]:
    try:
        data = json.loads(_cache_path(settings).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning("ignoring %s: %s", _cache_path(settings), err)
        return {}
    verdicts = data.get("verdicts") if isinstance(data, dict) else None
    return verdicts if isinstance(verdicts, dict) else {}


def cached_verdict(settings: Settings, key: str) -> Verdict | None:
    entry = read_cache(settings).get(key)
    if not isinstance(entry, dict):
        return None
    return Verdict(
        ok=bool(entry.get("ok")),
        reason=str(entry.get("reason", "")),
        max_abs_error=entry.get("max_abs_error"),
        speed_ratio=entry.get("speed_ratio"),
    )


def store_verdict(settings: Settings, key: str, result: dict[str, Any]) -> Verdict:
    verdict = Verdict.from_result(result)
    verdicts = read_cache(settings)
    verdicts[key] = {
        "ok": verdict.ok,
        "reason": verdict.reason,
        "max_abs_error": verdict.max_abs_error,
        "speed_ratio": verdict.speed_ratio,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "result": result,
    }
    write_atomic(_cache_path(settings), json.dumps({"version": 1, "verdicts": verdicts}, indent=2))
    return verdict


def record_self_test(settings: Settings, key: str) -> Verdict:
    """Run the self-test, cache its verdict under ``key`` and return it."""
    return store_verdict(settings, key, run_self_test(settings))
