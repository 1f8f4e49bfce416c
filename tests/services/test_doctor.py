"""services.doctor: every verdict path, with nvidia-ml-py stubbed (nvml_stub) and torch kept out
of the process (the self-test runs in a stand-in interpreter that prints a canned result)."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import pytest

from services import doctor, doctor_probe
from services.doctor import FAIL, OK, SAGE_FLAG, SKIP, WARN, ImageFacts, Tag, Verdict
from services.errors import BuildError
from services.gpu import GPU
from services.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
MATRIX = ROOT / "docker" / "cuda-matrix.json"
H200 = "NVIDIA H200"
PASSED = {
    "ok": True,
    "reason": "all 4 cases within tolerance",
    "sage_version": "2.2.0",
    "sm": "9.0",
    "max_abs_error": 0.012,
    "cases": [
        {
            "name": "normal",
            "nonfinite": 0,
            "max_abs_error": 0.003,
            "ref_max_abs": 0.08,
            "rel_l1": 0.02,
            "cosine": 0.9998,
        },
        {
            "name": "large",
            "nonfinite": 0,
            "max_abs_error": 0.012,
            "ref_max_abs": 9000.0,
            "rel_l1": 0.001,
            "cosine": 0.99999,
        },
    ],
    "speed": {"sdpa_ms": 7.0, "sage_ms": 3.5, "ratio": 2.0},
}
NAN = {
    "ok": False,
    "reason": "v-offset: 4096 NaN/Inf values in the output",
    "sage_version": "2.2.0",
    "sm": "8.6",
    "cases": [
        {
            "name": "v-offset",
            "nonfinite": 4096,
            "max_abs_error": None,
            "ref_max_abs": 1000.0,
            "rel_l1": None,
            "cosine": None,
        }
    ],
    "speed": None,
}


def gpu(name: str = H200, sm: str | None = "9.0", driver: str = "570.124.06", cuda: str | None = "12.8") -> GPU:
    return GPU(0, name, "GPU-0", 1, 0, 0, 40, 100.0, sm, driver, cuda)


def image(cuda: str = "12.8", tag: str | None = None, torch_arch: tuple[str, ...] | None = None, **kw) -> ImageFacts:
    row = next(r for r in json.loads(MATRIX.read_text())["variable"]["CUDA_MATRIX"]["default"] if r["cuda"] == cuda)
    arch = (
        torch_arch if torch_arch is not None else tuple(f"sm_{a.replace('.', '')}" for a in row["torch_arch"].split())
    )
    return ImageFacts(
        tag=tag or f"base-py3.13-{row['tag']}",
        cuda=cuda,
        torch=row["torch"],
        torch_arch=arch,
        sage_arch=tuple(row["sage_arch"].split()),
        **kw,
    )


@pytest.fixture
def tags(tmp_path) -> list[Tag]:
    (tmp_path / "docker").mkdir()
    shutil.copy(MATRIX, tmp_path / "docker" / "cuda-matrix.json")
    return doctor_probe.load_tags(load_settings({"APP_DIR": str(tmp_path), "WORKSPACE": str(tmp_path / "ws")}))


# ---- arithmetic -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("12.8", (12, 8)), ("2.9.1+cu128", (2, 9, 1)), ("570.124.06", (570, 124, 6)), ("", ()), (None, ())],
)
def test_version_tuple(text, expected):
    assert doctor.version_tuple(text) == expected


@pytest.mark.parametrize(
    ("sm", "arch", "expected"),
    [
        ("9.0", ["sm_80", "sm_90"], True),
        ("8.9", ["sm_80", "sm_86"], True),  # an sm_86 cubin runs on Ada
        ("8.6", ["sm_80"], True),
        ("8.0", ["sm_86"], False),  # not backwards
        ("12.0", ["sm_80", "sm_90"], False),  # RTX 5090 on a cu124/cu126 torch
        ("12.0", ["sm_90", "sm_100", "sm_120"], True),
        ("10.0", ["sm_90"], False),
        ("10.3", ["sm_100"], True),
        ("12.0", ["sm_90", "compute_90"], True),  # PTX JIT
        ("9.0", ["compute_120"], False),
        ("9.0", ["8.0", "9.0"], True),  # the table's form
        ("9.0", ["sm_90a"], True),
        ("", ["sm_90"], False),
    ],
)
def test_sm_supported(sm, arch, expected):
    assert doctor.sm_supported(sm, arch) is expected


def test_table_rows_load_as_tags(tags):
    assert [t.name for t in tags] == [f"base-py3.13-cu{v}" for v in ("124", "125", "126", "128", "129", "130")]
    assert all(t.min_driver for t in tags)


@pytest.mark.parametrize(
    ("driver_cuda", "sms", "expected"),
    [
        ("12.4", ["9.0"], "base-py3.13-cu124"),
        ("12.6", ["8.6"], "base-py3.13-cu126"),
        ("12.7", ["8.9"], "base-py3.13-cu126"),  # newest tag not above the driver
        ("12.8", ["12.0"], "base-py3.13-cu128"),
        ("13.0", ["12.0", "9.0"], "base-py3.13-cu130"),
        ("12.6", ["12.0"], None),  # a 5090 needs a 12.8 driver at least
        (None, ["9.0"], "base-py3.13-cu130"),
    ],
)
def test_suggest_tag(tags, driver_cuda, sms, expected):
    tag = doctor.suggest_tag(tags, driver_cuda, sms)
    assert (tag.name if tag else None) == expected


# ---- host checks ----------------------------------------------------------------------------------


def statuses(report):
    return {(c.name, c.status) for c in report.checks}


def test_no_gpu_is_a_skip_not_an_error(tags):
    report = doctor.host_report([], "no NVIDIA driver (NVMLError)", image(), tags)
    assert report.fatal is None and not report.failed
    assert report.checks[0].status == SKIP and "no NVIDIA driver" in report.checks[0].detail


def test_matching_host_passes(tags):
    report = doctor.host_report([gpu()], None, image("12.8"), tags)
    assert report.fatal is None
    assert ("cuda", OK) in statuses(report) and ("sm", OK) in statuses(report)


def test_driver_older_than_image_cuda_names_the_tag_to_use(tags):
    report = doctor.host_report([gpu(driver="550.90.07", cuda="12.4")], None, image("13.0"), tags)
    assert report.fatal is not None
    assert "CUDA 13.0" in report.fatal and "550.90.07" in report.fatal
    assert "use image tag base-py3.13-cu124 instead" in report.fatal
    assert ("cuda", FAIL) in statuses(report)


def test_gpu_without_torch_kernels_names_the_tag_to_use(tags):
    rtx5090 = gpu("NVIDIA GeForce RTX 5090", sm="12.0", driver="575.64", cuda="12.9")
    report = doctor.host_report([rtx5090], None, image("12.6"), tags)
    assert report.fatal is not None
    assert "RTX 5090 (SM 12.0" in report.fatal
    assert "use image tag base-py3.13-cu129 instead" in report.fatal


def test_old_driver_and_new_gpu_asks_for_a_driver_update(tags):
    rtx5090 = gpu("NVIDIA GeForce RTX 5090", sm="12.0", driver="560.35.03", cuda="12.6")
    report = doctor.host_report([rtx5090], None, image("12.8"), tags)
    assert "update the host driver to 570.26 or newer" in report.fatal


def test_outside_an_image_checks_are_skipped(tags):
    report = doctor.host_report([gpu()], None, None, tags)
    assert report.fatal is None and ("image", SKIP) in statuses(report)


def test_driver_without_cuda_version_warns(tags):
    report = doctor.host_report([gpu(cuda=None)], None, image("12.8"), tags)
    assert report.fatal is None and ("cuda", WARN) in statuses(report)


def test_mixed_gpus_are_each_checked(tags):
    pair = [gpu(), gpu("NVIDIA GeForce RTX 5090", sm="12.0")]
    report = doctor.host_report(pair, None, image("12.4", tag="base-py3.13-cu124"), tags)
    assert "RTX 5090" in report.fatal and "base-py3.13-cu128" in report.fatal


# ---- SageAttention decisions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "verdict", "flags", "words"),
    [
        ("off", None, [], "off"),
        ("off", Verdict(True, "fine"), [], "off"),
        ("on", None, [SAGE_FLAG], "no self-test verdict"),
        ("on", Verdict(False, "NaN"), [SAGE_FLAG], "forced although its self-test failed"),
        ("on", Verdict(True, "fine"), [SAGE_FLAG], "passed"),
        ("auto", None, [], "no self-test verdict"),
        ("auto", Verdict(True, "fine", speed_ratio=2.1), [SAGE_FLAG], "2.1x SDPA"),
        ("auto", Verdict(False, "large: 12 NaN/Inf values"), [], "self-test failed on NVIDIA H200: large: 12 NaN"),
    ],
)
def test_decide_attention(mode, verdict, flags, words):
    got_flags, reason = doctor.decide_attention(mode, H200, verdict)
    assert got_flags == flags
    assert words in reason


def test_sage_precheck_knows_missing_kernels_without_running():
    verdict = doctor.sage_precheck(gpu("NVIDIA GeForce RTX 5090", sm="12.0"), image("12.6"))
    assert verdict is not None and not verdict.ok and "not 12.0" in verdict.reason
    assert doctor.sage_precheck(gpu(), image("12.6")) is None
    assert doctor.sage_precheck(gpu(), None) is None


def test_sage_checks_lines():
    lines = doctor.sage_checks(PASSED)
    assert ("speed", OK) in {(c.name, c.status) for c in lines}
    assert any("2.0x" in c.detail for c in lines)
    assert lines[-1] == doctor.Check("verdict", OK, PASSED["reason"])
    bad = doctor.sage_checks(NAN)
    assert ("self-test", FAIL) in {(c.name, c.status) for c in bad} and bad[-1].status == FAIL
    missing = doctor.sage_checks({"ok": False, "reason": "sageattention does not import: No module named 'x'"})
    assert missing == [doctor.Check("sage", WARN, "sageattention does not import: No module named 'x'")]
    no_device = doctor.sage_checks({"ok": False, "reason": "torch sees no CUDA device"})
    assert no_device[0].status == SKIP


# ---- entry points, NVML stubbed -------------------------------------------------------------------


@pytest.fixture
def pod(tmp_path):
    """An app dir that looks like the image (image.json + the table) and a workspace."""

    def make(cuda: str | None = "12.8", mode: str = "auto", python: str | None = None, **image_kw):
        app = tmp_path / "app"
        (app / "docker").mkdir(parents=True, exist_ok=True)
        shutil.copy(MATRIX, app / "docker" / "cuda-matrix.json")
        if cuda:
            facts = image(cuda, **image_kw)
            data = {
                "tag": facts.tag,
                "cuda": facts.cuda,
                "torch": facts.torch,
                "torch_arch": list(facts.torch_arch),
                "sage_arch": list(facts.sage_arch),
                "sage": {"built": facts.sage_built, "reason": facts.sage_reason},
            }
            (app / "image.json").write_text(json.dumps(data))
        env = {"APP_DIR": str(app), "WORKSPACE": str(tmp_path / "ws"), "SAGE_ATTENTION": mode}
        if python:
            env["COMFYUI_PYTHON"] = python
        return load_settings(env)

    return make


@pytest.fixture
def fake_python(tmp_path):
    """A stand-in for ComfyUI's interpreter: answers the version probe and prints a canned self-test."""

    def make(result: dict | None, version: str | None = "2.2.0", exit_code: int = 0) -> str:
        script = tmp_path / "fake-python"
        counter = tmp_path / "self-test-runs"
        body = json.dumps(result) if result is not None else ""
        script.write_text(
            "#!/bin/sh\n"
            'if [ "$1" = "-c" ]; then\n'
            + (f"  echo {version}; exit 0\n" if version else "  exit 1\n")
            + "fi\n"
            + f"echo run >> {counter}\n"
            + "echo 'some library chatter'\n"
            + (f"cat <<'EOF'\n{body}\nEOF\n" if body else "echo 'Segmentation fault' >&2\n")
            + f"exit {exit_code}\n"
        )
        script.chmod(0o755)
        return str(script)

    return make


def runs(tmp_path) -> int:
    counter = tmp_path / "self-test-runs"
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_startup_step_without_gpu_logs_and_returns(nvml_stub, pod, caplog):
    caplog.set_level(logging.INFO, logger="comfypod.doctor")
    assert doctor.startup_step(pod()) is None
    assert "no GPU" in caplog.text


def test_startup_step_stops_on_an_old_driver(nvml_stub, pod):
    nvml_stub.add(H200, sm=(9, 0))
    nvml_stub.driver, nvml_stub.cuda = "550.127.05", 12040
    with pytest.raises(BuildError) as err:
        doctor.startup_step(pod("13.0"))
    assert "use image tag base-py3.13-cu124 instead" in str(err.value)
    assert err.value.exit_code == BuildError.exit_code


def test_startup_step_passes_on_a_matching_host(nvml_stub, pod, caplog):
    caplog.set_level(logging.INFO, logger="comfypod.doctor")
    nvml_stub.add(H200, sm=(9, 0))
    report = doctor.startup_step(pod("12.8"))
    assert report is not None and report.fatal is None
    assert "doctor: sm torch has kernels for SM 9.0" in caplog.text


def test_attention_flag_off_needs_no_gpu(nvml_stub, pod):
    assert doctor.attention_flag(pod(mode="off")) == ([], "SAGE_ATTENTION=off: PyTorch attention")


def test_attention_flag_without_gpu(nvml_stub, pod):
    flags, reason = doctor.attention_flag(pod(mode="on"))
    assert flags == [] and "no GPU" in reason


def test_attention_flag_without_sageattention(nvml_stub, pod, fake_python):
    nvml_stub.add(H200, sm=(9, 0))
    flags, reason = doctor.attention_flag(pod(mode="on", python=fake_python(None, version=None)))
    assert flags == [] and "sageattention is not installed" in reason


def test_attention_flag_names_why_the_build_left_it_out(nvml_stub, pod, fake_python):
    nvml_stub.add(H200, sm=(9, 0))
    settings = pod(
        "13.0",
        mode="auto",
        python=fake_python(None, version=None),
        sage_built=False,
        sage_reason="pip wheel failed (exit 1): nvcc fatal",
    )
    flags, reason = doctor.attention_flag(settings)
    assert flags == [] and "nvcc fatal" in reason


def test_auto_runs_the_self_test_once_and_caches_it(nvml_stub, pod, fake_python, tmp_path):
    nvml_stub.add(H200, sm=(9, 0))
    settings = pod(mode="auto", python=fake_python(PASSED))
    flags, reason = doctor.attention_flag(settings)
    assert flags == [SAGE_FLAG] and "passed on NVIDIA H200" in reason
    assert doctor.attention_flag(settings)[0] == [SAGE_FLAG]
    assert runs(tmp_path) == 1
    cache = json.loads((settings.state_dir / "doctor.json").read_text())
    assert list(cache["verdicts"]) == [f"{H200}|570.124.06|2.2.0"]


def test_a_new_driver_reruns_the_self_test(nvml_stub, pod, fake_python, tmp_path):
    nvml_stub.add(H200, sm=(9, 0))
    settings = pod(mode="auto", python=fake_python(PASSED))
    doctor.attention_flag(settings)
    nvml_stub.driver = "580.65.06"
    doctor.attention_flag(settings)
    assert runs(tmp_path) == 2


def test_auto_stays_off_after_a_failed_self_test(nvml_stub, pod, fake_python):
    nvml_stub.add("NVIDIA GeForce RTX 3090", sm=(8, 6))
    flags, reason = doctor.attention_flag(pod(mode="auto", python=fake_python(NAN)))
    assert flags == [] and "NaN/Inf" in reason


def test_on_forces_the_flag_with_a_warning_after_a_failed_test(nvml_stub, pod, fake_python, caplog):
    nvml_stub.add("NVIDIA GeForce RTX 3090", sm=(8, 6))
    settings = pod(mode="auto", python=fake_python(NAN))
    doctor.attention_flag(settings)  # auto: runs and caches the failure
    forced = settings.with_changes(sage_attention="on")
    flags, reason = doctor.attention_flag(forced)
    assert flags == [SAGE_FLAG] and "failed" in reason
    assert any(r.levelno == logging.WARNING and "forced" in r.getMessage() for r in caplog.records)


def test_a_crashing_self_test_is_a_failed_verdict(nvml_stub, pod, fake_python):
    nvml_stub.add(H200, sm=(9, 0))
    flags, reason = doctor.attention_flag(pod(mode="auto", python=fake_python(None, exit_code=139)))
    assert flags == [] and "exited with 139: Segmentation fault" in reason


def test_auto_skips_the_test_where_the_image_has_no_kernels(nvml_stub, pod, fake_python, tmp_path):
    nvml_stub.add("NVIDIA GeForce RTX 5090", sm=(12, 0))
    settings = pod("12.6", mode="auto", python=fake_python(PASSED), torch_arch=("sm_90", "sm_120"))
    flags, reason = doctor.attention_flag(settings)
    assert flags == [] and "not 12.0" in reason and runs(tmp_path) == 0


def test_run_self_test_times_out(pod, tmp_path):
    slow = tmp_path / "slow-python"
    slow.write_text("#!/bin/sh\nsleep 5\n")
    slow.chmod(0o755)
    result = doctor_probe.run_self_test(pod(python=str(slow)), timeout=0.3)
    assert result == {"ok": False, "reason": "the self-test did not finish within 0s"}


def test_sage_version_in_this_interpreter(pod):
    settings = pod(python=sys.executable)
    assert doctor_probe.sage_version(settings) is None  # not installed in the test venv


def test_a_damaged_cache_is_ignored(pod, caplog):
    settings = pod()
    settings.state_dir.mkdir(parents=True)
    (settings.state_dir / "doctor.json").write_text("{not json")
    assert doctor_probe.cached_verdict(settings, "x") is None
    assert "ignoring" in caplog.text
