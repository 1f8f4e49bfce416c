"""Issue 11, fuzzing: schemathesis drives every operation of /api/openapi.json against the admin
app in-process (WSGI) with the API token: valid and invalid inputs alike must never get a 500
and never hang.

Property tests of the parsers live beside their modules (hypothesis): settings in
tests/services/test_settings.py, the presets loader in tests/presets/test_validate.py, the
UI→API converter in tests/services/test_workflow.py; this file checks that they are there.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from services import credentials
from tests.plugins.admin import SMALL_CATALOG, make_admin_app

TESTS = Path(__file__).resolve().parents[1]
EXAMPLES = 25  # per operation and mode: ~45 operations x 2 modes stay well under a minute
SLOW_SECONDS = 10.0  # one call taking longer is a hang
# Operations that would end the run itself (a new token) or start real work outside the test
# (git clones of custom nodes); each is covered by its own area's tests.
SKIP = {
    ("POST", "/api/settings/api-token/rotate"),
    ("POST", "/api/nodes"),
    ("POST", "/api/nodes/import"),
    ("DELETE", "/api/nodes/{name}"),
    ("POST", "/api/nodes/{name}/restore"),
}


@pytest.fixture
def fuzz_app(settings):
    app = make_admin_app(settings)
    settings.presets_file.write_text(SMALL_CATALOG)
    return app


def test_openapi_operations_never_answer_500_or_hang(fuzz_app, settings, figures) -> None:
    token = credentials.api_token(settings).reveal()
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", fuzz_app, headers=headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30, "the OpenAPI document lost its operations"
    tried = 0
    slowest = (0.0, "")
    failures: list[str] = []
    covered = 0
    timing: dict[str, float] = {}
    for operation in operations:
        if (operation.method.upper(), operation.path) in SKIP:
            continue
        covered += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)

            @hsettings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                       suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def run(case) -> None:
                nonlocal tried, slowest
                started = time.monotonic()
                label = f"{case.method} {case.formatted_path}"
                try:
                    response = case.call(headers=headers)
                except Exception as err:  # noqa: BLE001 - the app let an exception out: a 500
                    failures.append(f"{label} body={case.body!r:.120} query={case.query!r:.120} -> "
                                    f"{type(err).__name__}: {err}")
                    return
                spent = time.monotonic() - started
                tried += 1
                slowest = max(slowest, (spent, label))
                if response.status_code >= 500 and response.status_code not in (502, 503, 507):
                    failures.append(f"{label} -> {response.status_code}: {response.text[:200]}")
                if spent > SLOW_SECONDS:
                    failures.append(f"{label} took {spent:.1f}s")

            began = time.monotonic()
            run()
            timing[f"{operation.method.upper()} {operation.path} {mode.value}"] = time.monotonic() - began
    print("slowest operations:", sorted(timing.items(), key=lambda kv: -kv[1])[:6])
    assert not failures, "\n".join(failures[:20])
    figures("fuzz_api", operations=covered, inputs_tried=tried, slowest_seconds=round(slowest[0], 2),
            slowest_call=slowest[1], failures=len(failures))


def test_property_tests_exist_for_each_parser() -> None:
    """settings parser, presets loader and workflow converter each have hypothesis tests."""
    wanted = {
        "services/test_settings.py": "settings parser",
        "presets/test_validate.py": "presets loader",
        "services/test_workflow.py": "UI to API converter",
    }
    for rel, what in wanted.items():
        text = (TESTS / rel).read_text()
        assert re.search(r"^@given\(", text, re.M), f"no hypothesis property test for the {what} in {rel}"


_ENV_KEYS = st.sampled_from(["ADMIN_PORT", "ENABLE_JUPYTER", "TIME_ZONE", "PRESET_DOWNLOAD", "COMFYUI_ARGS",
                             "LOG_LEVEL", "DOWNLOAD_CONNECTIONS", "CIVITAI_TOKEN"])
_SECRETS = st.text(min_size=4, max_size=30).map(lambda t: f"Zq9~{t}")  # distinctive: never a substring by chance


@hsettings(max_examples=150, deadline=None, database=None)
@given(env=st.dictionaries(_ENV_KEYS, st.text(max_size=40), max_size=6), password=_SECRETS, token=_SECRETS)
def test_settings_secrets_never_show_in_reprs_or_errors(env: dict[str, str], password: str, token: str) -> None:
    """Whatever else the environment holds, the password and a token never appear in a Settings
    repr or in the one-line error a bad value gives."""
    from services.errors import ComfyPodError
    from services.settings import load_settings

    env = {**env, "WORKSPACE": "/tmp/ws", "APP_DIR": "/tmp/app", "RUN_DIR": "/tmp/run",
           "ACCESS_PASSWORD": password, "HF_TOKEN": token}
    try:
        text = repr(load_settings(env))
    except ComfyPodError as err:
        text = str(err)
    for secret in (password.strip(), token.strip()):
        assert secret not in text


@pytest.mark.parametrize("body", ["true", '"J"', "[{}]", "-3.5e16", '{"paths": 37356}', '{"paths": [true]}'])
@pytest.mark.parametrize("url", ["/api/gallery/zip", "/api/workflows/check-models", "/api/workflows/install-missing"])
def test_issue_11_json_bodies_that_are_not_objects_are_a_400(fuzz_app, settings, url: str, body: str) -> None:
    """Regression (issue 11): these routes called .get() on whatever JSON came in (500)."""
    headers = {"Authorization": f"Bearer {credentials.api_token(settings).reveal()}"}
    response = fuzz_app.test_client().post(url, data=body, content_type="application/json", headers=headers)
    assert 400 <= response.status_code < 500, response.get_data()[:200]


@pytest.mark.parametrize("url", ["/api/presets/jobs/412144637671555923968",
                                 "/api/presets/jobs/9223372036854775808/cancel"])
def test_issue_11_job_ids_too_big_for_sqlite_are_no_job(fuzz_app, settings, url: str) -> None:
    """Regression (issue 11): a job id over 2**63 raised OverflowError in presets.queue (500)."""
    headers = {"Authorization": f"Bearer {credentials.api_token(settings).reveal()}"}
    client = fuzz_app.test_client()
    response = client.post(url, headers=headers) if url.endswith("cancel") else client.get(url, headers=headers)
    assert response.status_code == 404, response.get_data()[:200]
