from pathlib import Path

from services import programs


def test_one_conf_per_program():
    root = Path(__file__).resolve().parents[2] / "supervisor.d"
    confs = {p.stem for p in root.glob("*.conf")}
    assert set(programs.PROGRAM_NAMES) <= confs


def test_missing_binaries_are_reported(make_settings, tmp_path):
    s = make_settings(COMFYUI_DIR=str(tmp_path / "nope"), PUBLIC_KEY="", ENABLE_SSH="true")
    missing = programs.missing_binaries(s)
    assert "make comfyui" in missing["comfyui"]
    assert "PUBLIC_KEY" in missing["sshd"]
    assert "admin" not in missing and "downloader" not in missing
    s2, disabled = programs.disable_missing(s)
    assert not s2.enable_comfyui and not s2.enable_ssh and s2.enable_admin
    assert set(disabled) == set(missing)


def test_disabled_program_is_not_checked(make_settings, tmp_path):
    s = make_settings(COMFYUI_DIR=str(tmp_path / "nope"), ENABLE_COMFYUI="false")
    assert "comfyui" not in programs.missing_binaries(s)


def test_jupyter_and_code_server_listen_on_loopback(settings):
    assert "--ip=127.0.0.1" in programs.jupyter_argv(settings)
    argv = programs.code_server_argv(settings)
    assert f"127.0.0.1:{settings.code_server_internal_port}" in argv
    assert "none" == argv[argv.index("--auth") + 1]


def test_sshd_config_is_key_only(make_settings):
    s = make_settings(PUBLIC_KEY="ssh-ed25519 AAAA test")
    text = programs.sshd_config(s)
    assert "PasswordAuthentication no" in text and f"Port {s.ssh_port}" in text
