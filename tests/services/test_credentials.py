import stat

from services import credentials


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_generated_password_is_stored_as_hash_only(make_settings):
    s = make_settings(ACCESS_PASSWORD="")
    password = credentials.ensure_credentials(s)
    assert password and len(password) >= 12
    hash_file = s.state_dir / credentials.PASSWORD_FILE
    assert password not in hash_file.read_text()
    assert _mode(hash_file) == 0o600
    assert credentials.check_password(s, password)
    assert not credentials.check_password(s, "wrong")
    assert credentials.ensure_credentials(s) is None  # printed once only
    assert credentials.check_password(s, password)


def test_access_password_wins_and_changes(make_settings):
    s = make_settings(ACCESS_PASSWORD="first-password")
    assert credentials.ensure_credentials(s) is None
    assert credentials.check_password(s, "first-password")
    s2 = make_settings(ACCESS_PASSWORD="second-password")
    credentials.ensure_credentials(s2)
    assert credentials.check_password(s2, "second-password")
    assert not credentials.check_password(s2, "first-password")


def test_api_token_rotate_and_files_private(settings):
    credentials.ensure_credentials(settings)
    token = credentials.api_token(settings)
    assert token and credentials.check_api_token(settings, token.reveal())
    assert not credentials.check_api_token(settings, "nope")
    assert not credentials.check_api_token(settings, "")
    new = credentials.rotate_api_token(settings)
    assert new != token and credentials.check_api_token(settings, new.reveal())
    for name in (credentials.API_TOKEN_FILE, credentials.SECRET_KEY_FILE, credentials.PASSWORD_FILE):
        assert _mode(settings.state_dir / name) == 0o600


def test_stored_tokens_and_env_precedence(make_settings):
    s = make_settings(HF_TOKEN="")
    credentials.save_token(s, "hf_token", "hf_fromadminvalue")
    assert credentials.effective_token(s, "hf_token").reveal() == "hf_fromadminvalue"
    assert _mode(s.state_dir / credentials.TOKENS_FILE) == 0o600
    s_env = make_settings(HF_TOKEN="hf_fromenvvalue")
    assert credentials.effective_token(s_env, "hf_token").reveal() == "hf_fromenvvalue"
    credentials.save_token(s, "hf_token", "")
    assert not credentials.effective_token(s, "hf_token")


def test_corrupt_tokens_file_is_ignored(settings):
    settings.state_dir.mkdir(parents=True)
    (settings.state_dir / credentials.TOKENS_FILE).write_text("{not json")
    assert not credentials.stored_tokens(settings)["civitai_token"]
