import ast
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from services.errors import SettingsError
from services.secret import Secret
from services.settings import VARIABLES, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults():
    s = load_settings({})
    assert s.workspace == Path("/workspace")
    assert s.app_dir == Path("/app")
    assert s.time_zone == "Etc/UTC"
    assert (s.comfyui_port, s.admin_port, s.code_server_port, s.jupyter_port) == (3000, 8082, 8081, 8888)
    assert s.enable_admin and s.enable_comfyui and s.enable_jupyter
    assert s.comfyui_dir == Path("/app/ComfyUI")
    assert s.preset_download == ()
    assert s.sage_attention == "auto"


def test_every_variable_has_a_field():
    fields = set(Settings.__dataclass_fields__)
    for var in VARIABLES:
        assert var.field in fields, var.name


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"ENABLE_JUPYTER": "maybe"}, "ENABLE_JUPYTER='maybe'"),
        ({"ADMIN_PORT": "99999"}, "ADMIN_PORT='99999'"),
        ({"PRESETS_UPDATE_URL": "http://example.org/p.yaml"}, "PRESETS_UPDATE_URL='http://example.org/p.yaml'"),
        ({"TRUSTED_PROXIES": "10.0.0.0/8, proxy.example"}, "TRUSTED_PROXIES='10.0.0.0/8, proxy.example'"),
        ({"COMFYUI_PORT": "http"}, "COMFYUI_PORT='http'"),
        ({"TIME_ZONE": "Moon/Base"}, "TIME_ZONE='Moon/Base'"),
        ({"SAGE_ATTENTION": "fast"}, "SAGE_ATTENTION='fast'"),
        ({"DOWNLOAD_CONCURRENCY": "0"}, "DOWNLOAD_CONCURRENCY='0'"),
        ({"DOWNLOAD_CONNECTIONS": "1000"}, "DOWNLOAD_CONNECTIONS='1000'"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud'"),
        ({"COMFYUI_ARGS": "--a 'b"}, "COMFYUI_ARGS="),
        ({"PRESET_DOWNLOAD": "x;rm -rf"}, "PRESET_DOWNLOAD="),
        ({"LISTEN_ADDRESS": "0.0.0.0; evil"}, "LISTEN_ADDRESS="),
        ({"ENABLE_ADMIN": "sure"}, "ENABLE_ADMIN='sure'"),
        ({"ADMIN_PORT": "3000"}, "ADMIN_PORT=3000"),
    ],
)
def test_bad_values_give_one_clear_line(env, fragment):
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    message = str(err.value)
    assert fragment in message
    assert "expected" in message and "\n" not in message


def test_blank_value_means_default():
    s = load_settings({"TIME_ZONE": "", "ADMIN_PORT": " "})
    assert s.time_zone == "Etc/UTC" and s.admin_port == 8082


def test_aliases_with_notice():
    s = load_settings({"ENABLE_UNIFIED_DASHBOARD": "false"})
    assert s.enable_admin is False
    assert any("ENABLE_UNIFIED_DASHBOARD" in n and "ENABLE_ADMIN" in n for n in s.notices)
    s = load_settings({"ENABLE_PRESET_MANAGER": "false", "ENABLE_ADMIN": "true"})
    assert s.enable_admin is True
    assert any("ignored" in n for n in s.notices)


def test_secrets_are_masked():
    s = load_settings({"HF_TOKEN": "hf_abcdefghijklmnop", "ACCESS_PASSWORD": "hunter22"})
    assert isinstance(s.hf_token, Secret)
    assert "hf_abcdefghijklmnop" not in repr(s)
    assert "hunter22" not in repr(s) and "hunter22" not in f"{s.access_password}"
    assert s.hf_token.reveal() == "hf_abcdefghijklmnop"


def test_environment_is_normalized(tmp_path):
    s = load_settings({"WORKSPACE": str(tmp_path), "ENABLE_JUPYTER": "NO", "COMFYUI_ARGS": "--a 'b c'",
                       "PRESET_DOWNLOAD": "x, y"})
    env = s.environment()
    assert env["ENABLE_JUPYTER"] == "false" and env["ENABLE_ADMIN"] == "true"
    assert env["WORKSPACE"] == str(tmp_path)
    assert env["COMFYUI_ARGS"] == "--a 'b c'"
    assert env["PRESET_DOWNLOAD"] == "x,y"
    assert env["HF_HOME"].startswith(str(tmp_path))
    assert env["PIP_CACHE_DIR"].startswith(str(tmp_path))
    for var in VARIABLES:
        assert var.name in env
    # round trip: the normalized environment parses to the same settings
    assert load_settings(env).with_changes(notices=()) == s.with_changes(notices=())


def test_settings_are_frozen():
    s = load_settings({})
    with pytest.raises(AttributeError):
        s.admin_port = 1  # type: ignore[misc]


def _reads_environment(path: Path) -> list[int]:
    tree = ast.parse(path.read_text())
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                lines.append(node.lineno)
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            if any(alias.name in ("environ", "getenv") for alias in node.names):
                lines.append(node.lineno)
    return lines


def test_only_settings_reads_the_environment():
    offenders = {}
    for package in ("services", "admin", "presets"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "settings.py" and path.parent.name == "services":
                continue
            lines = _reads_environment(path)
            if lines:
                offenders[str(path.relative_to(ROOT))] = lines
    assert offenders == {}


def test_cli_prints_one_line_and_exits_nonzero(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "WORKSPACE": str(tmp_path), "ENABLE_JUPYTER": "maybe"}
    result = subprocess.run([sys.executable, "-m", "services.cli", "settings"], env=env, cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "ENABLE_JUPYTER='maybe'" in result.stderr


# ---- property test: any environment either loads or gives one SettingsError line ----------
_names = st.sampled_from([v.name for v in VARIABLES] + ["ENABLE_UNIFIED_DASHBOARD", "ENABLE_PRESET_MANAGER"])
_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["true", "false", "0", "65536", "-1", "Etc/UTC", "Mars/X", "'", "a,b", "\x00", " "]),
    st.integers(-100000, 100000).map(str),
)


@hsettings(max_examples=400, deadline=None)
@given(st.dictionaries(_names, _values, max_size=8))
def test_any_environment_loads_or_fails_with_one_line(env):
    env = {k: v.replace("\x00", "") if k in ("WORKSPACE", "APP_DIR") else v for k, v in env.items()}
    try:
        s = load_settings(env)
    except SettingsError as err:
        assert "\n" not in str(err) and "=" in str(err)
        return
    assert isinstance(s, Settings)
    assert load_settings(s.environment()).with_changes(notices=()) == s.with_changes(notices=())


def test_readme_lists_every_variable():
    """README's table is `comfypod settings --table`: a new variable must land there too."""
    readme = (ROOT / "README.md").read_text()
    missing = [var.name for var in VARIABLES if f"| `{var.name}` |" not in readme]
    assert missing == [], "run `comfypod settings --table` and paste it into README.md"
