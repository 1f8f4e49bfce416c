"""The admin in headless Chromium against the real mesh (supervisord, gunicorn, nginx, downloader).

One pod, one browser: a wrong password is refused; log in; install a preset whose files come from
a local range server and watch its bar reach done; delete a model; restart a service; see the
catalog editor's line-numbered errors. Every page is saved under artifacts/screenshots/.
"""

from __future__ import annotations

import hashlib
import re
import time

import pytest

from tests.plugins.browser import login, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PRESET_ID = "ADMIN_BROWSER_TEST"


def _catalog(urls: dict[str, str], sizes: dict[str, int], sums: dict[str, str]) -> str:
    files = "".join(
        f"""      - path: {path}
        url: {urls[path]}
        size: {sizes[path]}
        sha256: {sums[path]}
"""
        for path in urls
    )
    return f"""# written by tests/admin/test_browser.py
presets:
  {PRESET_ID}:
    name: Browser test preset
    type: image
    description: Two small files served by the test's own HTTP server.
    tags: [test, browser]
    vram_gb: 4
    files:
{files}"""


def _wait(predicate, timeout: float = 30.0, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {message}")


def test_admin_in_the_browser(mesh_factory, range_server, browser_page, workspace):
    from tests.support.range_server import safetensors_blob

    blobs = {
        "loras/browser-a.safetensors": safetensors_blob(3_000_000, seed=1),
        "vae/browser-b.safetensors": safetensors_blob(1_500_000, seed=2),
    }
    urls = {path: range_server.add("/" + path.split("/")[1], data, throttle=1_000_000) for path, data in blobs.items()}
    sizes = {path: len(data) for path, data in blobs.items()}
    sums = {path: hashlib.sha256(data).hexdigest() for path, data in blobs.items()}
    (workspace / "config").mkdir(parents=True, exist_ok=True)
    (workspace / "config" / "presets.yaml").write_text(_catalog(urls, sizes, sums))
    # this catalog stands as already merged with the image's default, so the start-up merge leaves
    # it small (the editor below holds only this test's preset)
    from presets.catalog import DEFAULT_PATH

    (workspace / "config" / "state").mkdir(parents=True, exist_ok=True)
    (workspace / "config" / "state" / "presets.default.yaml").write_text(DEFAULT_PATH.read_text())
    stray = workspace / "models" / "loras" / "delete-me.safetensors"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"not in any preset")

    mesh = mesh_factory()
    base = mesh.url("admin")
    page = browser_page
    page.on("dialog", lambda dialog: dialog.accept())

    # --- a wrong password is refused ------------------------------------------------------------
    page.goto(f"{base}/presets")
    assert "/_auth/login" in page.url
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit]")
    page.wait_for_selector("#login-error")
    assert "Wrong password" in page.text_content("#login-error")
    assert "/_auth/login" in page.url
    screenshot(page, "login-refused")

    # --- log in -------------------------------------------------------------------------------
    login(page, base, mesh.password)
    page.wait_for_selector("#services-table tr#program-admin")
    page.wait_for_selector("#system-cards #system-card")
    screenshot(page, "home")

    # --- install a preset and watch the bar reach done -----------------------------------------
    page.goto(f"{base}/presets?q={PRESET_ID}")
    card = f"#preset-{PRESET_ID}"
    page.wait_for_selector(f"{card}[data-state=missing]")
    page.click(f"{card} [data-action=install]")
    page.wait_for_selector(f"{card} .progress, #jobs .job")
    seen = set()

    def progressed():
        jobs = page.query_selector_all("#jobs .job")
        for job in jobs:
            state = job.get_attribute("data-state")
            seen.add(state)
            bar = job.query_selector("[role=progressbar]")
            if bar:
                seen.add(f"pct:{bar.get_attribute('aria-valuenow')}")
        return any(j.get_attribute("data-state") == "running" for j in jobs) or "done" in seen

    _wait(progressed, 30, "the download to start")
    screenshot(page, "presets-installing", full_page=False)
    _wait(lambda: page.query_selector("#jobs .job[data-state=done]"), 60, "the job to finish")
    done_bar = page.query_selector("#jobs .job[data-state=done] [role=progressbar]")
    assert done_bar.get_attribute("aria-valuenow") == "100"
    page.wait_for_selector(f"{card}[data-state=installed]", timeout=20_000)
    for path, data in blobs.items():
        target = workspace / "models" / path
        assert target.read_bytes() == data, path
    screenshot(page, "presets-installed", full_page=False)
    page.goto(f"{base}/presets")
    page.wait_for_selector(".preset")
    screenshot(page, "presets", full_page=False)

    # --- delete a model -------------------------------------------------------------------------
    page.goto(f"{base}/models")
    row = 'tr[data-path="loras/delete-me.safetensors"]'
    page.wait_for_selector(row)
    assert page.query_selector('tr[data-path="loras/browser-a.safetensors"]') is not None
    screenshot(page, "models")
    page.click(f"{row} [data-action=delete]")
    page.wait_for_selector(row, state="detached")
    assert "Deleted loras/delete-me.safetensors" in page.text_content("#model-files")
    assert not stray.exists()

    # --- restart a service ---------------------------------------------------------------------
    supervisor = mesh.supervisor
    before = supervisor.state("code-server").pid
    page.goto(f"{base}/services?log=code-server")
    page.wait_for_selector("#program-code-server[data-state=RUNNING]")
    page.click("#program-code-server [data-action=restart]")
    page.wait_for_selector("#services-flash .alert.ok")
    assert "code-server restarted" in page.text_content("#services-flash")
    after = _wait(lambda: (s := supervisor.state("code-server")).running and s.pid != before and s.pid, 20,
                  "code-server to come back")
    assert after != before
    page.wait_for_selector("#service-log pre.log")
    screenshot(page, "services")

    # --- logs and settings ----------------------------------------------------------------------
    page.goto(f"{base}/logs?name=admin.log")
    page.wait_for_selector("#log-tail pre.log")
    screenshot(page, "logs")
    page.goto(f"{base}/settings")
    screenshot(page, "settings", full_page=False)
    text = page.input_value("#catalog-text").replace("url: http://", "url: ftp://", 1)
    page.fill("#catalog-text", text)
    page.click("#catalog-form button[value=validate]")
    page.wait_for_selector("#catalog-result .catalog-errors a[data-line]")
    assert re.search(r"line \d+", page.text_content("#catalog-result"))
    page.query_selector("#catalog-result").scroll_into_view_if_needed()
    screenshot(page, "settings-catalog-errors", full_page=False)

    # --- a phone-sized window -------------------------------------------------------------------
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{base}/presets")
    page.wait_for_selector(".preset")
    screenshot(page, "presets-phone", full_page=False)
