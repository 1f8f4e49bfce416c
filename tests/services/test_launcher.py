"""services.launcher: ComfyUI's command line, the attention flag and the log line that explains it."""

from __future__ import annotations

import sys
import types

import pytest
from click.testing import CliRunner

from services import launcher
from services.errors import ComfyUIError


@pytest.fixture
def doctor(monkeypatch):
    """A stand-in services.doctor whose verdict the test sets; records the mode it was asked with."""
    module = types.ModuleType("services.doctor")
    module.asked = []
    module.verdict = (["--use-sage-attention"], "SageAttention self-test passed on NVIDIA H100")

    def attention_flag(settings):
        module.asked.append(settings.sage_attention)
        if settings.sage_attention == "off":
            return [], "SAGE_ATTENTION=off"
        return module.verdict

    module.attention_flag = attention_flag
    monkeypatch.setitem(sys.modules, "services.doctor", module)
    return module


def test_argv_is_loopback_with_workspace_folders_and_user_args_last(make_settings):
    settings = make_settings(COMFYUI_ARGS="--lowvram --preview-method auto", COMFYUI_INTERNAL_PORT="19999")
    argv = launcher.comfyui_argv(settings, ["--use-sage-attention"])
    assert argv[1:6] == ["main.py", "--listen", "127.0.0.1", "--port", "19999"]
    assert argv[argv.index("--extra-model-paths-config") + 1] == str(settings.config_dir / "extra_model_paths.yaml")
    assert argv[argv.index("--output-directory") + 1] == str(settings.output_dir)
    assert argv[argv.index("--input-directory") + 1] == str(settings.input_dir)
    assert argv[-4:] == ["--use-sage-attention", "--lowvram", "--preview-method", "auto"]


def test_sage_flag_only_when_doctor_says_so(make_settings, doctor):
    choice = launcher.attention_choice(make_settings(SAGE_ATTENTION="auto"))
    assert choice.flags == ("--use-sage-attention",)
    assert choice.reason == "SageAttention self-test passed on NVIDIA H100"
    doctor.verdict = ([], "SAGE_ATTENTION=auto ignored: no GPU: PyTorch attention")
    choice = launcher.attention_choice(make_settings(SAGE_ATTENTION="auto"))
    assert choice.flags == () and "no GPU" in choice.reason


def test_admin_setting_wins_over_the_environment(make_settings, doctor):
    settings = make_settings(SAGE_ATTENTION="on")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / launcher.SAGE_STATE_FILE).write_text("off\n")
    choice = launcher.attention_choice(settings)
    assert (choice.mode, choice.mode_source, choice.flags) == ("off", "admin setting", ())
    assert doctor.asked == []  # off: the doctor is not even asked
    (settings.state_dir / launcher.SAGE_STATE_FILE).write_text("auto")
    choice = launcher.attention_choice(settings)
    assert (choice.mode, choice.mode_source) == ("auto", "admin setting") and doctor.asked == ["auto"]


def test_bad_stored_mode_falls_back_to_the_environment(make_settings, doctor, caplog):
    settings = make_settings(SAGE_ATTENTION="auto")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / launcher.SAGE_STATE_FILE).write_text("maybe")
    assert launcher.sage_mode(settings) == ("auto", "SAGE_ATTENTION")
    assert "ignoring 'maybe'" in caplog.text


def test_user_attention_flag_in_comfyui_args_wins(make_settings, doctor):
    choice = launcher.attention_choice(make_settings(COMFYUI_ARGS="--use-pytorch-cross-attention"))
    assert choice.flags == () and "COMFYUI_ARGS already chooses attention" in choice.reason
    assert doctor.asked == []


def test_without_doctor_module_there_is_no_flag(make_settings, monkeypatch):
    monkeypatch.setitem(sys.modules, "services.doctor", None)  # import fails
    choice = launcher.attention_choice(make_settings())
    assert choice.flags == () and "not available" in choice.reason


def test_command_logs_flags_and_why_then_execs(make_settings, doctor, monkeypatch):
    settings = make_settings(COMFYUI_ARGS="--fast")
    calls = {}
    monkeypatch.setattr(launcher.os, "chdir", lambda path: calls.setdefault("cwd", str(path)))
    monkeypatch.setattr(launcher.os, "execv", lambda path, argv: calls.setdefault("argv", argv))
    result = CliRunner().invoke(launcher.comfyui_command, obj={"settings": settings})
    assert result.exit_code == 0, result.output
    assert calls["cwd"] == str(settings.comfyui_dir)
    assert calls["argv"][-2:] == ["--use-sage-attention", "--fast"]
    line = result.output.splitlines()[0]
    assert line.startswith("comfyui flags: --use-sage-attention (SageAttention mode auto from SAGE_ATTENTION: ")
    assert "self-test passed" in line and line.endswith("COMFYUI_ARGS: --fast")


def test_command_refuses_a_missing_comfyui(make_settings, tmp_path):
    settings = make_settings(COMFYUI_DIR=str(tmp_path / "nowhere"))
    result = CliRunner().invoke(launcher.comfyui_command, obj={"settings": settings})
    assert isinstance(result.exception, ComfyUIError)
    assert "not installed" in str(result.exception)
