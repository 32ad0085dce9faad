"""The real server as a subprocess (`python run.py`), for the tests that kill it or load it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cvtools.settings import PROJECT_ROOT

from .conftest import free_port


def server_env(tiny_convnext: Path, search_url: str) -> dict[str, str]:
    """The subprocess's settings: the tiny model, the local fake search engine (Bing format)."""
    return {
        "CVTOOLS_NEURONET": str(tiny_convnext),
        "CVTOOLS_PRELOAD_MODEL": "false",
        "CVTOOLS_ALLOW_PRIVATE_URLS": "true",
        "CVTOOLS_GRAB_BING_URL": f"{search_url}/bing/async",
        "CVTOOLS_GRAB_MIN_SIDE": "16",
        "CVTOOLS_MAX_IMAGE_PIXELS": "1000000",
        "HF_HUB_OFFLINE": "1",
    }


class Server:
    def __init__(self, data: Path, env: dict[str, str]) -> None:
        self.data, self.env = data, env
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> None:
        port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(PROJECT_ROOT / "run.py"), "--dataset", str(self.data), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **self.env},
        )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/api/status", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            self.kill()
            raise AssertionError("server did not start")
        # the start-up rescan (adopting files) finishes before the checks
        while any(
            j["state"] in ("queued", "running") for j in self.get("/api/status")["jobs"] if j["kind"] == "rescan"
        ):
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def get(self, path: str) -> dict:
        return httpx.get(self.url + path, timeout=30).json()  # type: ignore[no-any-return]
