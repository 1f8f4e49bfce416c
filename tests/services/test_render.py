import configparser
import subprocess
import sys

from ruamel.yaml import YAML

from services import render
from services.paths import MODEL_FOLDERS


def test_supervisord_conf_parses_and_includes_programs(settings):
    text = render.render_supervisord(settings)
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    assert parser.get("unix_http_server", "file") == str(settings.supervisor_socket)
    assert parser.get("supervisord", "nodaemon") == "true"
    assert parser.get("supervisord", "logfile").startswith(str(settings.logs_dir))
    assert parser.get("include", "files") == f"{settings.app_dir}/supervisor.d/*.conf"


def test_program_confs_share_the_same_keys(settings):
    keys = None
    for conf in sorted((settings.app_dir / "supervisor.d").glob("*.conf")):
        parser = configparser.RawConfigParser()
        parser.read(conf)
        (section,) = parser.sections()
        kind, name = section.split(":")
        assert f"{name}.conf" == conf.name
        if kind != "program":
            continue
        assert parser.get(section, "stdout_logfile") == f"%(ENV_WORKSPACE)s/logs/{name}.log"
        assert parser.get(section, "autostart").startswith("%(ENV_ENABLE_")
        for key in ("startsecs", "startretries", "autorestart", "stopasgroup", "killasgroup",
                    "stdout_logfile_maxbytes", "stdout_logfile_backups"):
            assert parser.has_option(section, key), (name, key)
        if keys is None:
            keys = set(parser.options(section))
        assert set(parser.options(section)) == keys, name


def test_rendered_config_is_valid_for_supervisord(settings, tmp_path):
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    settings.logs_dir.mkdir(parents=True)
    conf = settings.run_dir / "supervisord.conf"
    conf.write_text(render.render_supervisord(settings))
    env = settings.environment()
    code = (
        "import sys; from supervisor.options import ServerOptions; o = ServerOptions();"
        "o.realize(['-c', sys.argv[1]]); print(sorted(g.name for g in o.process_group_configs))"
    )
    result = subprocess.run([sys.executable, "-c", code, str(conf)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for name in ("admin", "comfyui", "downloader", "nginx", "code-server", "jupyter", "sshd"):
        assert f"'{name}'" in result.stdout


def test_extra_model_paths(settings):
    data = YAML(typ="safe").load(render.render_extra_model_paths(settings))
    section = data["comfypod"]
    assert section["base_path"] == str(settings.models_dir)
    for folder in MODEL_FOLDERS:
        assert section[folder] == f"{folder}/"


def test_write_configs(settings):
    written = render.write_configs(settings)
    assert settings.supervisord_conf in written
    assert render.extra_model_paths_file(settings).is_file()
    assert oct(settings.run_dir.stat().st_mode & 0o777) == "0o700"
