from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The app's settings come from the tests alone; CVTOOLS_SLOW (the long test variants) is not a setting.
for _k in [k for k in os.environ if k.startswith("CVTOOLS_") and k != "CVTOOLS_SLOW"]:
    del os.environ[_k]


from cvtools.settings import Settings  # noqa: E402
from cvtools.web import create_app, server  # noqa: E402

from .helpers import TestClient  # noqa: E402


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    return tmp_path / "dataset"


@pytest.fixture
def settings(dataset_dir: Path) -> Settings:
    return Settings(
        dataset_dir=dataset_dir,
        max_upload_mb=5,
        max_image_pixels=1_000_000,
        neuronet="none/offline-test",
        preload_model=False,
    )


def wait_jobs(client: TestClient, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = client.get("/api/status").json()["jobs"]
        if all(j["state"] in ("done", "failed", "cancelled") for j in jobs):
            return
        time.sleep(0.05)
    raise AssertionError("jobs did not finish")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        wait_jobs(c)
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    def __init__(self, settings: Settings) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings)
        self.server = uvicorn.Server(server.config(self.app, "127.0.0.1", self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(settings) as server:
        yield server


@pytest.fixture(scope="session")
def tiny_convnext(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ConvNeXtV2 saved with save_pretrained: the real loading code, offline."""
    from transformers import ConvNextImageProcessor, ConvNextV2Config, ConvNextV2ForImageClassification

    folder = tmp_path_factory.mktemp("tiny-convnextv2")
    import torch

    torch.manual_seed(0)
    config = ConvNextV2Config(
        num_channels=3, hidden_sizes=[16, 32], depths=[1, 1], num_stages=2, image_size=64, num_labels=10
    )
    ConvNextV2ForImageClassification(config).save_pretrained(folder)
    ConvNextImageProcessor(size={"shortest_edge": 64}, crop_pct=0.875).save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_settings(dataset_dir: Path, tiny_convnext: Path) -> Settings:
    return Settings(dataset_dir=dataset_dir, neuronet=str(tiny_convnext), preload_model=False, batch_size=16)


@pytest.fixture
def tiny_client(tiny_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(tiny_settings)) as c:
        wait_jobs(c)
        yield c


def fill_classes(
    client: TestClient | httpx.Client,
    per_class: int = 12,
    classes: tuple[str, ...] = ("red", "green", "blue"),
    size: int = 72,
) -> None:
    from .helpers import class_image

    for cls in classes:
        client.post("/api/groups", json={"name": cls})
        files = [("files", (f"{cls}{i}.png", class_image(cls, i, size), "image/png")) for i in range(per_class)]
        r = client.post(f"/api/groups/{cls}/images", files=files)
        assert len(r.json()["added"]) == per_class, r.text


def run_training(client: TestClient | httpx.Client, mode: str = "head", timeout: float = 240, **params: object) -> dict:
    r = client.post("/api/train", json={"mode": mode, "params": params})
    assert r.status_code == 202, r.text
    job_id, run = r.json()["job"], r.json()["run"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.1)
    assert job["state"] == "done", job
    return client.get(f"/api/train/runs/{run}").json()


@pytest.fixture
def tiny_live_server(tiny_settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(tiny_settings) as server:
        yield server
