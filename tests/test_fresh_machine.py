"""What a new user gets: `python run.py` starts with ONNX Runtime active, and the app says so when it
cannot use it (and what that costs)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cvtools.settings import PROJECT_ROOT, Settings
from cvtools.web import create_app

from .conftest import free_port, wait_jobs
from .helpers import TestClient


def test_run_py_starts_with_onnxruntime(tmp_path: Path) -> None:
    """The README's first command, minus the install: the default network is not available offline, so
    the built-in EfficientNet-Lite0 is served, on ONNX Runtime."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVTOOLS_")}
    proc = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "run.py"), "--port", str(port), "--dataset", str(tmp_path / "ds")],
        env={**env, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        model: dict = {}
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                model = httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=2).json()["model"]
                if model.get("loaded"):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        assert model.get("loaded"), proc.stderr.read() if proc.poll() is not None else "the network did not load"
        assert model["offline_fallback"] and model["backbone"] == "efficientnet-lite0", model
        assert model["runtime"] == "onnxruntime", model
        assert model["runtime_warning"] is None
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
        assert 'id="runtime-banner"' not in page
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.parametrize("cause", ["missing", "parity"])
def test_status_and_banner_say_when_onnxruntime_is_not_used(
    cause: str, tiny_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    if cause == "missing":
        monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as on a machine without it
    else:
        monkeypatch.setattr("cvtools.vision.onnx_runtime.PARITY_TOL", -1.0)  # every export "differs"
    with TestClient(create_app(tiny_settings)) as c:
        wait_jobs(c)
        c.app.state.services.models.backbone()  # type: ignore[attr-defined]
        model = c.get("/api/status").json()["model"]
        assert model["runtime"] == "torch"
        warning = model["runtime_warning"]
        assert warning and "slower" in warning and "PyTorch" in warning
        assert ("not installed" in warning) if cause == "missing" else ("differ" in warning)
        page = c.get("/").text
        assert 'id="runtime-banner"' in page and "slower" in page


def test_torch_chosen_on_purpose_is_no_warning(tiny_settings: Settings) -> None:
    with TestClient(create_app(tiny_settings.model_copy(update={"inference_runtime": "torch"}))) as c:
        wait_jobs(c)
        c.app.state.services.models.backbone()  # type: ignore[attr-defined]
        model = c.get("/api/status").json()["model"]
        assert model["runtime"] == "torch" and model["runtime_warning"] is None


def test_favicon_is_served(client: TestClient) -> None:
    r = client.get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
