"""/cv on Ray Serve: the app's answers and errors from a bundle, scaled from one replica to two while
clients keep asking, and the token when one is set."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from cvtools.bundle import extra, read_files
from cvtools.settings import PROJECT_ROOT

from ..conftest import free_port
from .conftest import Trained
from .test_batch import ENV

ray = pytest.importorskip("ray")
from cvtools.bundle import serve  # noqa: E402  (needs ray's FastAPI)


@pytest.fixture(scope="module")
def served(trained: Trained) -> Iterator[tuple[str, serve.ServeOptions, dict[str, bytes]]]:
    extra.init(None)
    port = free_port()
    opts = serve.ServeOptions.from_settings(trained.settings, "127.0.0.1")
    files = read_files(trained.bundle)
    serve.deploy(files, opts, replicas=1, host="127.0.0.1", port=port)
    try:
        yield f"http://127.0.0.1:{port}", opts, files
    finally:
        from ray import serve as ray_serve

        ray_serve.shutdown()
        ray.shutdown()


def close(app: list, got: list) -> bool:
    return [g for g, _ in got] == [g for g, _ in app] and all(
        abs(a[1] - b[1]) <= (2e-4 if a[0] == "unknown" else 1e-5) for a, b in zip(app, got, strict=True)
    )


def test_same_answers_as_the_app(trained: Trained, served: tuple) -> None:
    base = served[0]
    folder = trained.settings.public_dirs[0]
    for name in sorted(trained.images)[:12]:
        r = httpx.get(f"{base}/cv?{folder / name}:0", timeout=30)
        assert r.status_code == 200, r.text
        assert close(trained.app_cv[name], r.json())
        top2 = httpx.get(f"{base}/cv?{folder / name}:2", timeout=30).json()
        assert len(top2) == 3 and close(trained.app_cv[name][:3], top2)
        raw = httpx.post(f"{base}/cv", content=trained.images[name], params={"n": 0}, timeout=30).json()
        form = httpx.post(f"{base}/cv", files={"file": (name, trained.images[name])}, timeout=30).json()
        assert close(trained.app_cv[name], raw) and close(trained.app_cv[name], form)


@pytest.mark.parametrize(
    ("query", "status"),
    [("/etc/passwd", 403), ("{folder}/nothing.png", 404), ("{folder}/red0.png:x1", 400), ("", 400)],
)
def test_errors_as_the_app(trained: Trained, served: tuple, query: str, status: int) -> None:
    url = f"{served[0]}/cv?" + query.format(folder=trained.settings.public_dirs[0])
    r = httpx.get(url, timeout=30)
    assert r.status_code == status and "detail" in r.json(), r.text


def test_bad_bodies(served: tuple) -> None:
    base = served[0]
    r = httpx.post(f"{base}/cv", content=b"not an image", timeout=30)
    assert r.status_code == 415 and "not an image" in r.json()["detail"]
    assert httpx.post(f"{base}/cv", content=b"", timeout=30).status_code == 400
    r = httpx.post(f"{base}/cv", content=b"x", params={"n": -1}, timeout=30)
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)


def test_scale_without_a_stop_then_token(trained: Trained, served: tuple) -> None:
    base, opts, files = served
    name = sorted(trained.images)[0]
    url = f"{base}/cv?{trained.settings.public_dirs[0] / name}:0"
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def ask() -> None:
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                r = c.get(url)
                if r.status_code != 200:
                    failures.append(r.text)
                answered[0] += 1

    t = threading.Thread(target=ask)
    t.start()
    try:
        port = int(base.rsplit(":", 1)[1])
        serve.deploy(files, opts, replicas=2, host="127.0.0.1", port=port)
        assert serve.replicas_running() == 2
    finally:
        stop.set()
        t.join()
    assert not failures and answered[0] > 0
    serve.deploy(files, replace(opts, token="s3cret-token-for-tests"), replicas=2, host="127.0.0.1", port=port)
    assert httpx.get(url, timeout=30).status_code == 401
    ok = httpx.get(url, headers={"Authorization": "Bearer s3cret-token-for-tests"}, timeout=30)
    assert ok.status_code == 200 and close(trained.app_cv[name], ok.json())


def test_serve_command_scale_from_another_process_and_stop(trained: Trained, tmp_path: Path) -> None:
    """`serve` as a user runs it: a local Ray, then `serve --address auto --replicas 2` from a second
    process changes the running application, and SIGTERM stops it all."""
    port = free_port()
    env = {**ENV, "CVTOOLS_DATASET_DIR": str(trained.settings.dataset_dir)}
    cmd = [sys.executable, "-m", "cvtools", "serve", "--bundle", str(trained.bundle), "--port", str(port)]
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "Ctrl-C" not in (tmp_path / "serve.log").read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.2)
        name = sorted(trained.images)[0]
        url = f"http://127.0.0.1:{port}/cv"
        first = httpx.post(url, content=trained.images[name], params={"n": 0}, timeout=30)
        assert first.status_code == 200, first.text
        second = subprocess.run(
            [*cmd, "--replicas", "2", "--address", "auto"],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert second.returncode == 0 and "2 replicas running" in second.stdout, second.stdout + second.stderr[-3000:]
        again = httpx.post(url, content=trained.images[name], params={"n": 0}, timeout=30)
        assert again.status_code == 200 and again.json() == first.json()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0
