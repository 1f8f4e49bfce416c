"""services.sage_check: the pass/fail rule, and the early exits with torch / sageattention stubbed
at their import boundary (sys.modules)."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from services import sage_check


def case(name="normal", nonfinite=0, rel_l1=0.02, cosine=0.9995, error=None):
    return {
        "name": name,
        "nonfinite": nonfinite,
        "rel_l1": rel_l1,
        "cosine": cosine,
        "error": error,
        "max_abs_error": 0.01,
        "ref_max_abs": 1.0,
    }


@pytest.mark.parametrize(
    ("cases", "ok", "words"),
    [
        ([case(), case("large", rel_l1=0.001)], True, "worst: normal"),
        ([case(), case("large", nonfinite=12, rel_l1=None, cosine=None)], False, "large: 12 NaN/Inf"),
        ([case(cosine=0.95)], False, "cosine similarity 0.9500 < 0.99"),
        ([case(rel_l1=0.3)], False, "relative L1 error 0.3000 > 0.1"),
        ([case(error="no kernel image is available", rel_l1=None, cosine=None)], False, "no kernel image"),
        ([], False, "no case ran"),
    ],
)
def test_verdict(cases, ok, words):
    got_ok, reason = sage_check.verdict(cases)
    assert got_ok is ok
    assert words in reason


def test_cases_include_large_magnitudes():
    names = {name for name, *_ in sage_check.CASES}
    assert {"normal", "large", "v-offset"} <= names
    assert max(v_scale * 5 + v_offset for _, _, v_scale, _, v_offset in sage_check.CASES) < 65504  # fp16 inputs


def test_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    result = sage_check.run()
    assert result["ok"] is False and result["reason"].startswith("torch does not import")


def fake_torch(available: bool):
    cuda = SimpleNamespace(
        is_available=lambda: available,
        get_device_capability=lambda index: (8, 6),
        get_device_name=lambda index: "NVIDIA GeForce RTX 3090",
        get_arch_list=lambda: ["sm_80", "sm_86", "sm_90"],
    )
    return SimpleNamespace(__version__="2.9.1+cu128", version=SimpleNamespace(cuda="12.8"), cuda=cuda)


def test_without_a_cuda_device(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(available=False))
    result = sage_check.run()
    assert result == {
        "ok": False,
        "reason": "torch sees no CUDA device",
        "cases": [],
        "speed": None,
        "torch": "2.9.1+cu128",
        "torch_cuda": "12.8",
    }


def test_without_sageattention(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(available=True))
    monkeypatch.setitem(sys.modules, "sageattention", None)
    result = sage_check.run()
    assert result["ok"] is False and result["reason"].startswith("sageattention does not import")
    assert result["gpu"] == "NVIDIA GeForce RTX 3090" and result["sm"] == "8.6"


def test_runs_as_a_script_and_prints_one_json_line():
    """The doctor runs the file with ComfyUI's interpreter; here torch is absent, so it says so."""
    done = subprocess.run([sys.executable, sage_check.__file__], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ok"] is False and "torch" in result["reason"]
