"""End to end: the real mesh (supervisord, nginx, gunicorn, fake ComfyUI) driven from headless
Chromium. A workflow naming a missing checkpoint offers the preset that provides it; once the file
is there a run shows live progress up to 100% and its image lands in the gallery; a second run is
interrupted from the page. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import time

import pytest

from presets.catalog import CatalogStore
from services import model_presets
from tests.plugins.browser import login, screenshot

CHECKPOINT = "v1-5-pruned-emaonly-fp16.safetensors"


@pytest.mark.e2e
@pytest.mark.browser
def test_run_from_the_admin_with_progress_gallery_and_interrupt(mesh_factory, browser_page):
    mesh = mesh_factory(FAKE_COMFYUI_STEP_DELAY="0.12", ENABLE_CODE_SERVER="false")
    page = browser_page
    admin = mesh.url("admin")
    login(page, admin, mesh.password, "/workflows")
    assert "Workflows" in page.title()
    page.wait_for_selector("text=answering")

    # 1. a workflow naming a missing checkpoint offers the preset that provides it
    page.click("a.title:has-text('Stable Diffusion 1.5 text to image')")
    page.wait_for_selector("#missing-models")
    missing = page.locator(f"[data-missing='checkpoints/{CHECKPOINT}']")
    assert missing.count() == 1
    catalog = CatalogStore(mesh.settings).current()
    providers = {p["id"] for p in model_presets.presets_providing(list(catalog), "checkpoints", CHECKPOINT)}
    assert "SD1_5_TEXT_TO_IMAGE_BASIC" in providers and len(providers) > 1
    offered = {el.get_attribute("value") for el in page.locator("#missing-models input[name=preset]").all()}
    assert offered == providers
    checked = page.locator("#missing-models input[name=preset]:checked")
    assert checked.count() == 1 and checked.get_attribute("value") == "SD1_5_TEXT_TO_IMAGE_BASIC"
    screenshot(page, "workflow-missing-model")

    # the file arrives (as the preset's download would put it); ComfyUI now sees it
    (mesh.settings.models_dir / "checkpoints" / CHECKPOINT).write_bytes(b"\0" * 1024)
    page.click("button:has-text('Check again')")
    page.wait_for_selector("#models-ok")

    # 2. run: progress goes up to 100% and the image lands in the gallery
    page.fill("textarea[name='p:6.text']", "a lighthouse on a cliff at sunset, oil painting")
    page.fill("input[name='p:3.steps']", "25")
    page.click("#run-form button[type=submit]")
    panel = page.locator(".run-panel")
    panel.wait_for()
    percents: list[int] = []
    mid_run_shot = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = panel.locator("[data-percent]").inner_text().rstrip("%")
        if text.isdigit() and (not percents or percents[-1] != int(text)):
            percents.append(int(text))
        if not mid_run_shot and percents and 60 < percents[-1] < 90:
            screenshot(page, "workflow-run-progress")
            mid_run_shot = True
        if panel.get_attribute("data-status") == "success":
            break
        time.sleep(0.05)
    percents.append(int(panel.locator("[data-percent]").inner_text().rstrip("%")))
    assert panel.get_attribute("data-status") == "success", percents
    assert percents[-1] == 100 and any(0 < p < 100 for p in percents), percents
    assert panel.locator(".nodes li[data-node='3'] .state").inner_text() == "done 25/25"
    output = panel.locator("[data-outputs] a")
    output.first.wait_for()
    filename = output.first.get_attribute("data-output")
    assert filename.startswith("txt2img_")
    page.wait_for_function("document.querySelector('[data-outputs] img').naturalWidth > 0")
    screenshot(page, "workflow-run")

    page.goto(f"{admin}/gallery")
    tile = page.locator(f".tile[data-output='sd15/{filename}']")
    tile.wait_for()
    page.wait_for_function(
        f"document.querySelector(\".tile[data-output='sd15/{filename}'] img\").naturalWidth > 0")
    screenshot(page, "gallery")
    tile.locator("a.thumb").click()
    page.wait_for_selector("text=a lighthouse on a cliff at sunset")
    assert page.locator("a:has-text('Run again')").count() == 1

    # 3. a second run is interrupted from the page; the sampler stops between steps
    page.goto(f"{admin}/workflows/open?source=example&name=sd15-txt2img.json")
    page.fill("input[name='p:3.steps']", "400")
    page.click("#run-form button[type=submit]")
    panel = page.locator(".run-panel")
    page.wait_for_function("document.querySelector(\".nodes li[data-node='3']\")?.dataset.state === 'running'")
    sampler_state = "document.querySelector(\".nodes li[data-node='3'] .state\").textContent"
    page.wait_for_function(f"/^\\d+\\/400$/.test({sampler_state})")
    panel.locator("[data-cancel]").click()
    page.wait_for_function("document.querySelector('.run-panel').dataset.status === 'interrupted'", timeout=30_000)
    steps = panel.locator(".nodes li[data-node='3'] .state").inner_text()
    assert steps.startswith("interrupted ") and int(steps.split()[1].split("/")[0]) < 400, steps
    screenshot(page, "workflow-interrupted")
    assert "interrupted" in page.locator("#queue").inner_text()
