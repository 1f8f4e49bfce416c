"""`comfypod doctor`: output and exit status for each outcome (NVML stubbed, fake interpreter)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.cli import cli
from services.errors import BuildError
from services.settings import load_settings
from tests.services.test_doctor import H200, NAN, PASSED

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings_for(tmp_path):
    def make(result: dict | None, cuda: str = "12.8", sage_version: str | None = "2.2.0"):
        app = tmp_path / "app"
        (app / "docker").mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "docker" / "cuda-matrix.json", app / "docker" / "cuda-matrix.json")
        arch = {"12.8": ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"], "13.0": ["sm_75", "sm_90"]}[cuda]
        (app / "image.json").write_text(
            json.dumps(
                {
                    "tag": f"base-py3.13-cu{cuda.replace('.', '')}",
                    "cuda": cuda,
                    "torch": "2.9.1",
                    "torch_arch": arch,
                    "sage_arch": ["8.0", "8.6", "8.9", "9.0", "10.0", "12.0"],
                    "sage": {"built": True},
                }
            )
        )
        python = tmp_path / "fake-python"
        probe = f"echo {sage_version}; exit 0" if sage_version else "exit 1"
        python.write_text(
            f'#!/bin/sh\nif [ "$1" = "-c" ]; then {probe}; fi\ncat <<\'EOF\'\n{json.dumps(result)}\nEOF\n'
        )
        python.chmod(0o755)
        return load_settings({"APP_DIR": str(app), "WORKSPACE": str(tmp_path / "ws"), "COMFYUI_PYTHON": str(python)})

    return make


def invoke(settings, *args):
    return CliRunner().invoke(cli, ["doctor", *args], obj={"settings": settings})


def test_no_gpu(nvml_stub, settings_for):
    result = invoke(settings_for(PASSED))
    assert result.exit_code == 0, result.output
    assert "no GPU" in result.output
    assert "attention" in result.output and "no flag" in result.output


def test_passing_self_test_prints_error_and_speed(nvml_stub, settings_for):
    nvml_stub.add(H200, sm=(9, 0))
    result = invoke(settings_for(PASSED))
    assert result.exit_code == 0, result.output
    assert "max abs error 0.012" in result.output
    assert "sageattn 3.5 ms vs SDPA 7.0 ms: 2.0x" in result.output
    assert "--use-sage-attention: SAGE_ATTENTION=auto: SageAttention" in result.output


def test_failed_self_test_exits_1_and_keeps_pytorch_attention(nvml_stub, settings_for):
    nvml_stub.add("NVIDIA GeForce RTX 3090", sm=(8, 6))
    result = invoke(settings_for(NAN))
    assert result.exit_code == 1
    assert "FAIL" in result.output and "no flag: SAGE_ATTENTION=auto: PyTorch attention" in result.output


def test_wrong_image_for_this_driver_is_a_build_error(nvml_stub, settings_for):
    nvml_stub.add(H200, sm=(9, 0))
    nvml_stub.cuda = 12040
    result = invoke(settings_for(PASSED, cuda="13.0"))
    assert isinstance(result.exception, BuildError)
    assert "use image tag base-py3.13-cu124 instead" in str(result.exception)


def test_quick_skips_the_self_test_and_json_reports(nvml_stub, settings_for):
    nvml_stub.add(H200, sm=(9, 0))
    result = invoke(settings_for(PASSED), "--quick", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["fatal"] is None and "self_test" not in report
    assert {c["name"] for c in report["checks"]} >= {"driver", "gpu", "image", "cuda", "sm", "attention"}
