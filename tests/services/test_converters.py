from pathlib import Path

import pytest

from services import converters
from services.errors import SettingsError


@pytest.mark.parametrize(
    "raw, expected",
    [("true", True), ("TRUE", True), (" yes ", True), ("1", True), ("on", True),
     ("false", False), ("No", False), ("0", False), ("off", False)],
)
def test_boolean_accepts(raw, expected):
    assert converters.boolean("ENABLE_X", raw) is expected


@pytest.mark.parametrize("raw", ["maybe", "", "2", "tru", "y e s"])
def test_boolean_rejects_naming_variable_and_choices(raw):
    with pytest.raises(SettingsError) as err:
        converters.boolean("ENABLE_JUPYTER", raw)
    text = str(err.value)
    assert "ENABLE_JUPYTER" in text and "true/false" in text and "\n" not in text


@pytest.mark.parametrize("raw, expected", [("1", 1), ("65535", 65535), (" 8082 ", 8082)])
def test_port_accepts(raw, expected):
    assert converters.port("ADMIN_PORT", raw) == expected


@pytest.mark.parametrize("raw", ["0", "99999", "-1", "80a", "", "1e3", "8082.0"])
def test_port_rejects(raw):
    with pytest.raises(SettingsError, match=r"ADMIN_PORT=.* expected a whole number from 1 to 65535"):
        converters.port("ADMIN_PORT", raw)


@pytest.mark.parametrize("raw", ["Etc/UTC", "Europe/Berlin", "America/New_York", "UTC"])
def test_timezone_accepts(raw):
    assert converters.timezone("TIME_ZONE", raw) == raw


@pytest.mark.parametrize("raw", ["Mars/Olympus", "", "../../etc/passwd", "/etc/localtime", "Europe/"])
def test_timezone_rejects(raw):
    with pytest.raises(SettingsError, match="TIME_ZONE=.*IANA time zone"):
        converters.timezone("TIME_ZONE", raw)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("", ()),
        ("WAN_22_5B_TIV2", ("WAN_22_5B_TIV2",)),
        (" a , b,,c ", ("a", "b", "c")),
        ("a b;c", ("a", "b", "c")),
        ("a,a,b", ("a", "b")),
        ("flux-dev-basic", ("flux-dev-basic",)),
    ],
)
def test_id_list(raw, expected):
    assert converters.id_list("PRESET_DOWNLOAD", raw) == expected


@pytest.mark.parametrize("raw", ["a,$(rm -rf /)", "../x", "a,/b"])
def test_id_list_rejects(raw):
    with pytest.raises(SettingsError, match="PRESET_DOWNLOAD"):
        converters.id_list("PRESET_DOWNLOAD", raw)


def test_path_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert converters.path("WORKSPACE", "ws") == tmp_path / "ws"
    assert converters.path("WORKSPACE", "/workspace") == Path("/workspace")
    with pytest.raises(SettingsError):
        converters.path("WORKSPACE", "  ")


def test_choice_and_arguments():
    assert converters.choice("SAGE_ATTENTION", "AUTO", ("auto", "on", "off")) == "auto"
    with pytest.raises(SettingsError, match="one of auto, on, off"):
        converters.choice("SAGE_ATTENTION", "sometimes", ("auto", "on", "off"))
    assert converters.arguments("COMFYUI_ARGS", "--lowvram --preview-method 'auto'") == (
        "--lowvram", "--preview-method", "auto")
    with pytest.raises(SettingsError, match="COMFYUI_ARGS"):
        converters.arguments("COMFYUI_ARGS", "--x 'unclosed")
