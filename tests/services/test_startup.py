import pytest

from services import startup
from services.errors import SettingsError, WorkspaceError


def test_prepare_builds_environment(make_settings):
    s = make_settings(ENABLE_JUPYTER="no", ACCESS_PASSWORD="")
    prepared = startup.prepare(s, base_env={"PATH": "/usr/bin", "HOME": "/root"})
    env = prepared.env
    assert env["ENABLE_JUPYTER"] == "false" and env["ENABLE_ADMIN"] == "true"
    assert env["PATH"].split(":")[0] == str(s.venv_bin)
    assert env["HOME"] == "/root"
    assert prepared.generated_password  # first start: generated, shown once
    assert s.supervisord_conf.is_file()
    assert (s.workspace / "models" / "checkpoints").is_dir()
    again = startup.prepare(s, base_env={"PATH": "/usr/bin"})
    assert again.generated_password is None


def test_missing_binary_turns_program_off(make_settings, tmp_path):
    s = make_settings(COMFYUI_DIR=str(tmp_path / "absent"))
    prepared = startup.prepare(s, base_env={})
    assert prepared.env["ENABLE_COMFYUI"] == "false"
    assert "comfyui" in prepared.disabled
    text = startup.banner(prepared)
    assert "comfyui" in text and "make comfyui" in text


def test_banner_shows_url_and_password(make_settings):
    s = make_settings(ACCESS_PASSWORD="")
    prepared = startup.prepare(s, base_env={})
    text = startup.banner(prepared)
    assert f":{s.admin_port}/" in text and prepared.generated_password in text


def test_essential_step_failure_stops(make_settings):
    s = make_settings()
    s.workspace.rmdir()
    s.workspace.write_text("a file where the workspace should be")
    with pytest.raises(WorkspaceError):
        startup.prepare(s, base_env={})


def test_steps_resolve():
    for step in startup.STEPS:
        module, _, attr = step.target.partition(":")
        assert module and attr


def test_optional_step_failure_is_logged_not_fatal(make_settings, monkeypatch, caplog):
    def broken(settings):
        raise SettingsError("broken optional step")

    monkeypatch.setattr(startup, "STEPS", (*startup.STEPS, startup.Step("tests.services.test_startup:_broken", False)))
    monkeypatch.setitem(globals(), "_broken", broken)
    startup.prepare(make_settings(), base_env={})
    assert "broken optional step" in caplog.text


def test_a_second_up_on_a_running_mesh_is_refused_before_touching_anything(make_settings, tmp_path):
    from services.errors import ServiceError
    from tests.support.supervisord import running_supervisord

    settings = make_settings()
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    programs = "[program:idle]\ncommand=sleep 600\nautostart=false\n"
    with running_supervisord(settings.supervisor_socket, tmp_path, programs) as client:
        with pytest.raises(ServiceError, match=rf"already running .*pid {client.pid()}"):
            startup.up(settings)
    assert not settings.supervisord_conf.exists()  # nothing rendered over the running mesh's files
    settings.supervisor_socket.unlink(missing_ok=True)
    settings.supervisor_socket.write_text("")  # what a killed supervisord leaves: no obstacle
    startup.refuse_if_running(settings)
