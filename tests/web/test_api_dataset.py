"""Status, Groups, Images and Jobs endpoints exactly as API.md says, including every error case."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import httpx
import pytest

from cvtools.settings import Settings
from cvtools.web import create_app

from ..conftest import LiveServer
from ..helpers import TestClient, assert_consistent, image_bytes, snapshot


def upload(client: TestClient, group: str, files: list[tuple[str, bytes]], status: str | None = None) -> httpx.Response:
    data = {"status": status} if status else None
    return client.post(
        f"/api/groups/{group}/images", files=[("files", (n, b, "image/png")) for n, b in files], data=data
    )


def test_status_shape(client: TestClient, settings: Settings) -> None:
    s = client.get("/api/status").json()
    assert set(s) == {"model", "dataset", "jobs"}
    assert set(s["model"]) >= {"name", "backbone", "run", "offline_fallback", "classes"}
    assert s["dataset"] == {
        "dir": str(settings.dataset_dir),
        "groups": 0,
        "images": {"group": 0, "new": 0, "deleted": 0},
    }
    assert s["jobs"][0]["kind"] == "rescan" and s["jobs"][0]["state"] == "done"


def test_groups_crud(client: TestClient) -> None:
    assert client.post("/api/groups", json={"name": "mammals"}).status_code == 201
    r = client.post("/api/groups", json={"name": "cats", "parent": "mammals"})
    assert (r.status_code, r.json()) == (201, {"name": "mammals/cats"})
    assert client.post("/api/groups", json={"name": "cats", "parent": "mammals"}).status_code == 409
    assert client.post("/api/groups", json={"name": "x", "parent": "missing"}).status_code == 404
    groups = client.get("/api/groups").json()["groups"]
    assert groups == [
        {"name": "mammals", "parent": None, "counts": {"group": 0, "new": 0, "deleted": 0}},
        {"name": "mammals/cats", "parent": "mammals", "counts": {"group": 0, "new": 0, "deleted": 0}},
    ]
    upload(client, "mammals/cats", [("a.png", image_bytes(1))])
    r = client.patch("/api/groups/mammals", json={"name": "animals"})
    assert r.json() == {"name": "animals"}
    assert client.get("/api/groups/animals/cats/images").json()["total"] == 1
    assert client.patch("/api/groups/nope", json={"name": "x"}).status_code == 404
    client.post("/api/groups", json={"name": "birds"})
    assert client.patch("/api/groups/birds", json={"name": "animals"}).status_code == 409
    r = client.delete("/api/groups/animals")
    assert r.json() == {"deleted": "animals", "images": 1}
    assert [g["name"] for g in client.get("/api/groups").json()["groups"]] == ["birds"]
    assert client.get("/api/status").json()["dataset"]["images"]["deleted"] == 1
    assert client.delete("/api/groups/animals").status_code == 404


@pytest.mark.parametrize("name", ["", "/", "a/b", "\\", "..", ".secret", "ab\x01", "line\nbreak", "\u202e"])
def test_bad_group_names_400_and_nothing_changes(client: TestClient, dataset_dir: Path, name: str) -> None:
    before = snapshot(dataset_dir)
    r = client.post("/api/groups", json={"name": name})
    assert r.status_code == 400, r.text
    assert isinstance(r.json()["detail"], str)
    assert client.get("/api/groups").json()["groups"] == []
    assert snapshot(dataset_dir) == before


def test_schema_errors_are_422_with_text(client: TestClient) -> None:
    r = client.post("/api/groups", json={"nom": "x"})
    assert r.status_code == 422 and "name" in r.json()["detail"]
    r = client.post("/api/groups", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = client.post("/api/images/status", json={"ids": "abc", "status": "new"})
    assert r.status_code == 422
    assert client.get("/api/groups/x/images?limit=100000").status_code == 422


def test_images_upload_list_status_move(client: TestClient) -> None:
    client.post("/api/groups", json={"name": "g"})
    client.post("/api/groups", json={"name": "h"})
    r = upload(client, "g", [("a.png", image_bytes(1)), ("b.png", image_bytes(2)), ("c.png", image_bytes(3))])
    assert r.status_code == 200
    added = r.json()["added"]
    assert len(added) == 3 and r.json()["skipped"] == []
    img = added[0]
    assert set(img) >= {"id", "group", "status", "path", "url", "thumb", "sha256", "source", "width", "height"}
    assert (img["group"], img["status"], img["width"], img["height"]) == ("g", "group", 48, 40)
    assert Path(img["path"]).is_file()
    assert client.get(img["url"]).content == image_bytes(1)
    thumb = client.get(img["thumb"])
    assert thumb.headers["content-type"] == "image/jpeg" and thumb.content[:2] == b"\xff\xd8"
    assert client.get(f"/api/images/{img['id']}").json() == img
    page = client.get("/api/groups/g/images?offset=1&limit=1").json()
    assert page["total"] == 3 and [i["id"] for i in page["images"]] == [added[1]["id"]]
    ids = [a["id"] for a in added]
    assert client.post("/api/images/status", json={"ids": ids[:2], "status": "new"}).json() == {"updated": 2}
    assert client.get("/api/groups/g/images?status=new").json()["total"] == 2
    assert client.post("/api/images/move", json={"ids": ids[:2], "group": "h"}).json() == {"moved": 2}
    h = client.get("/api/groups/h/images").json()
    assert h["total"] == 2 and all(i["status"] == "group" for i in h["images"])
    new = upload(client, "g", [("n.png", image_bytes(4))], status="new").json()["added"][0]
    assert new["status"] == "new"


def test_selection_of_a_whole_status_except_some(client: TestClient) -> None:
    """`every` selects every image of a group's status, loaded by the page or not, except some ids."""
    client.post("/api/groups", json={"name": "g"})
    client.post("/api/groups", json={"name": "h"})
    ids = [a["id"] for a in upload(client, "g", [(f"{i}.png", image_bytes(i)) for i in range(12)]).json()["added"]]
    every = {"group": "g", "status": "group", "except": ids[:2]}
    assert client.post("/api/images/status", json={"every": every, "status": "new"}).json() == {"updated": 10}
    assert client.get("/api/groups/g/images").json()["total"] == 2
    every = {"group": "g", "status": "new", "except": []}
    assert client.post("/api/images/move", json={"every": every, "group": "h"}).json() == {"moved": 10}
    assert client.get("/api/groups/h/images").json()["total"] == 10
    bad = {"every": {"group": "nope", "status": "group"}, "status": "deleted"}
    assert client.post("/api/images/status", json=bad).status_code == 404
    bad = {"every": {"group": "g", "status": "maybe"}, "status": "deleted"}
    assert client.post("/api/images/status", json=bad).status_code == 422
    assert client.get("/api/groups/g/images").json()["total"] == 2  # nothing changed by the refused ones


def test_upload_skips_with_reasons(client: TestClient, dataset_dir: Path) -> None:
    client.post("/api/groups", json={"name": "g"})
    upload(client, "g", [("a.png", image_bytes(1))])
    before = snapshot(dataset_dir)
    gif = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (1500, 1000)).save(gif, "GIF")
    r = upload(
        client,
        "g",
        [
            ("dup.png", image_bytes(1)),
            ("fake.jpg", b"<html>not an image</html>"),
            ("cut.png", image_bytes(5)[:200]),
            ("big.gif", gif.getvalue()),
            ("empty.png", b""),
        ],
    )
    assert r.status_code == 200
    assert r.json()["added"] == []
    reasons = {s["name"]: s["reason"] for s in r.json()["skipped"]}
    assert set(reasons) == {"dup.png", "fake.jpg", "cut.png", "big.gif", "empty.png"}
    assert "too large" in reasons["big.gif"]
    assert snapshot(dataset_dir) == before


def test_upload_errors(client: TestClient, dataset_dir: Path) -> None:
    client.post("/api/groups", json={"name": "g"})
    before = snapshot(dataset_dir)
    assert upload(client, "nope", [("a.png", image_bytes(1))]).status_code == 404
    assert upload(client, "g", [("a.png", image_bytes(1))], status="bogus").status_code == 422
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (6 * 1024 * 1024)
    r = upload(client, "g", [("big.png", big)])
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    assert client.post("/api/groups/g/images").status_code == 422
    assert snapshot(dataset_dir) == before


def test_chunked_body_over_limit_is_413(live_server: LiveServer) -> None:
    httpx.post(f"{live_server.url}/api/groups", json={"name": "g"})

    def body():  # type: ignore[no-untyped-def]
        yield b'--zzz\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n'
        yield b"Content-Type: image/png\r\n\r\n"
        for _ in range(7):
            yield b"x" * (1024 * 1024)

    r = httpx.post(
        f"{live_server.url}/api/groups/g/images",
        content=body(),
        headers={"content-type": "multipart/form-data; boundary=zzz"},
        timeout=30,
    )
    assert r.status_code == 413


def test_image_errors(client: TestClient) -> None:
    assert client.get("/api/images/nope").status_code == 404
    assert client.get("/api/images/nope/file").status_code == 404
    assert client.get("/api/images/nope/thumb").status_code == 404
    assert client.post("/api/images/status", json={"ids": ["nope"], "status": "new"}).status_code == 404
    client.post("/api/groups", json={"name": "g"})
    iid = upload(client, "g", [("a.png", image_bytes(1))]).json()["added"][0]["id"]
    assert client.post("/api/images/status", json={"ids": [iid], "status": "gone"}).status_code == 422
    assert client.post("/api/images/move", json={"ids": [iid], "group": "missing"}).status_code == 404
    assert client.post("/api/images/move", json={"ids": [iid], "group": "../x"}).status_code == 400
    assert client.get("/api/groups/g/images?status=weird").status_code == 422
    assert client.get("/api/groups/missing/images").status_code == 404
    assert client.get("/api/images/" + iid).json()["status"] == "group"


def test_jobs_endpoints(client: TestClient) -> None:
    job = client.get("/api/status").json()["jobs"][0]
    assert client.get(f"/api/jobs/{job['id']}").json()["state"] == "done"
    assert client.post(f"/api/jobs/{job['id']}/cancel").json()["state"] == "done"
    assert client.get("/api/jobs/nope").status_code == 404
    assert client.post("/api/jobs/nope/cancel").status_code == 404


def test_job_cancel_and_progress() -> None:
    from cvtools.jobs import JobRunner

    runner = JobRunner()
    seen: list[dict] = []
    runner.listeners.append(seen.append)

    def work(job):  # type: ignore[no-untyped-def]
        for i in range(1000):
            job.check()
            job.progress(i, 1000, f"step {i}")
            time.sleep(0.005)
        return "finished"

    job = runner.submit("test", work)
    time.sleep(0.1)
    runner.cancel(job.id)
    assert runner.wait(job.id, 5).state == "cancelled"
    assert seen[-1]["state"] == "cancelled"
    assert any(e["state"] == "running" and e["progress"]["total"] == 1000 for e in seen)
    failing = runner.submit("test", lambda job: 1 / 0)
    assert runner.wait(failing.id, 5).state == "failed" and "ZeroDivisionError" in failing.error
    runner.shutdown()


def test_events_stream_delivers_job_and_dataset_events(live_server: LiveServer) -> None:
    events: list[tuple[str, dict]] = []
    with httpx.Client(base_url=live_server.url, timeout=10) as c, c.stream("GET", "/api/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        c.post("/api/groups", json={"name": "live"})
        name = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name:
                events.append((name, json.loads(line[6:])))
                if name == "dataset":
                    break
    assert ("dataset", {"op": "groups", "name": "live"}) in events


def test_openapi_lists_contract(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for p in [
        "/api/status",
        "/api/groups",
        "/api/groups/{group}",
        "/api/groups/{group}/images",
        "/api/images/status",
        "/api/images/move",
        "/api/images/{image_id}",
        "/api/images/{image_id}/file",
        "/api/images/{image_id}/thumb",
        "/api/jobs/{job_id}",
        "/api/jobs/{job_id}/cancel",
        "/api/events",
    ]:
        assert p in paths, p


def test_auth_token_everywhere(dataset_dir: Path) -> None:
    s = Settings(dataset_dir=dataset_dir, auth_token="t0ken-t0ken-t0ken-1", host="127.0.0.1")
    with TestClient(create_app(s)) as c:
        for path in ["/api/status", "/api/groups", "/api/events", "/api/images/x/thumb", "/api/jobs/x"]:
            assert c.get(path).status_code == 401, path
        page = c.get("/", headers={"accept": "text/html"}, follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        assert c.get("/api/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/status", headers={"Authorization": "Bearer t0ken-t0ken-t0ken-1"}).status_code == 200
        assert c.post("/login", data={"token": "nope"}).status_code == 401
        r = c.post("/login", data={"token": "t0ken-t0ken-t0ken-1", "next": "//evil.example"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert c.get("/api/groups").status_code == 200  # the cookie is now sent
        cross = c.post("/api/groups", json={"name": "x"}, headers={"origin": "http://evil.example"})
        assert cross.status_code == 403
        assert c.post("/api/groups", json={"name": "x"}, headers={"origin": "http://localhost"}).status_code == 201


def test_kill_9_during_status_change_keeps_consistency(tmp_path: Path) -> None:
    """The real server as a subprocess, killed while moving 500 images; the restart is consistent."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import threading

    from cvtools.settings import PROJECT_ROOT

    from ..conftest import free_port

    data = tmp_path / "d"
    rng = random.Random(7)

    def start() -> tuple[subprocess.Popen, str]:
        port = free_port()
        env = {**os.environ, "CVTOOLS_MAX_IMAGE_PIXELS": "1000000"}
        proc = subprocess.Popen(
            [sys.executable, str(PROJECT_ROOT / "run.py"), "--dataset", str(data), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(url + "/api/status", timeout=1).status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                time.sleep(0.05)
        proc.kill()
        raise AssertionError("server did not start")

    proc, url = start()
    httpx.post(url + "/api/groups", json={"name": "g"})
    files = [("files", (f"i{i}.png", image_bytes(i, size=(16, 16)), "image/png")) for i in range(500)]
    added = httpx.post(url + "/api/groups/g/images", files=files, timeout=120).json()["added"]
    ids = [a["id"] for a in added]
    shas = {a["sha256"] for a in added}
    assert len(ids) == 500
    for round_ in range(3):
        target = ["new", "group", "deleted"][round_]

        def change(url: str = url, target: str = target) -> None:
            try:
                httpx.post(url + "/api/images/status", json={"ids": ids, "status": target}, timeout=60)
            except httpx.HTTPError:
                pass  # the server was killed mid-request, as intended

        t = threading.Thread(target=change, daemon=True)
        t.start()
        time.sleep(rng.uniform(0.02, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        t.join(5)
        assert_consistent(data)
        proc, url = start()
        got = {
            i["sha256"]
            for s in ("group", "new", "deleted")
            for i in httpx.get(url + f"/api/groups/g/images?status={s}&limit=1000").json()["images"]
        }
        assert got == shas, "an image was lost"
    proc.kill()
    proc.wait()
