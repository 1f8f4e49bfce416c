"""GPU and system probes on Home and /api/system: the no-GPU path and a (fake) GPU."""

from __future__ import annotations

import pytest

import admin.system as system_area
from services.gpu import GPU


@pytest.fixture(autouse=True)
def _fresh_cache():
    system_area._cache.update(at=0.0, value=None)
    yield
    system_area._cache.update(at=0.0, value=None)


def test_no_gpu(admin_app, api_headers, admin_client, monkeypatch):
    monkeypatch.setattr(system_area.gpu, "gpus", lambda: [])
    monkeypatch.setattr(system_area.gpu, "gpu_error", lambda: "no NVIDIA driver (NVMLError_LibraryNotFound)")
    data = admin_app.test_client().get("/api/system", headers=api_headers).get_json()
    assert data["gpus"] == [] and "no NVIDIA driver" in data["gpu_error"]
    assert data["system"]["memory_total"] > 0 and data["system"]["disk_total"] > 0
    system_area._cache.update(at=0.0, value=None)
    html = admin_client.get("/system/_cards").get_data(as_text=True)
    assert 'id="no-gpu"' in html and "No GPU" in html


def test_with_gpu(admin_client, monkeypatch):
    fake = GPU(index=0, name="NVIDIA H100 80GB HBM3", uuid="GPU-1", memory_total=80 * 1024**3,
               memory_used=10 * 1024**3, utilization=42, temperature=55, power_watts=310.0, sm="9.0",
               driver="570.86", cuda_driver="12.8")
    monkeypatch.setattr(system_area.gpu, "gpus", lambda: [fake])
    html = admin_client.get("/system/_cards").get_data(as_text=True)
    assert "NVIDIA H100 80GB HBM3" in html and "42 %" in html and "55 °C" in html and "SM 9.0" in html
    with admin_client.application.app_context():
        assert system_area.largest_vram_gb() == pytest.approx(80.0)


def test_snapshot_is_cached(admin_app, monkeypatch):
    calls = []
    monkeypatch.setattr(system_area.gpu, "gpus", lambda: calls.append(1) or [])
    with admin_app.app_context():
        for _ in range(5):
            system_area.snapshot()
    assert len(calls) == 1
