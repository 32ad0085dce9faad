"""Defects an adversarial test found, each as a regression test against a real server and real files:
an attacker on another website, an unlucky operator, a hostile or slow client."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cvtools import imaging
from cvtools.settings import Settings, SettingsError, load_settings
from cvtools.web import server as web_server

from ..conftest import LiveServer, fill_classes, run_training
from ..helpers import assert_consistent, image_bytes


def chattr(flag: str, folder: Path) -> bool:
    return subprocess.run(["chattr", flag, str(folder)], capture_output=True).returncode == 0


@pytest.fixture
def immutable() -> Iterator[list[Path]]:
    """Folders made immutable (chattr +i: as a read-only mount or a full disk behaves, even for root)."""
    folders: list[Path] = []
    yield folders
    for f in folders:
        chattr("-i", f)


def make_immutable(folders: list[Path], folder: Path) -> None:
    if not chattr("+i", folder):
        pytest.skip("chattr +i is not supported on this file system")
    folders.append(folder)


def upload(c: httpx.Client, group: str, seeds: list[int], **kw: object) -> httpx.Response:
    files = [("files", (f"img{s}.png", image_bytes(s, size=(64, 48)), "image/png")) for s in seeds]
    return c.post(f"/api/groups/{group}/images", files=files, timeout=60, **kw)


def listed(c: httpx.Client, group: str, status: str = "group") -> list[str]:
    return [i["sha256"] for i in c.get(f"/api/groups/{group}/images?status={status}").json()["images"]]


def sha(seed: int) -> str:
    import hashlib

    return hashlib.sha256(image_bytes(seed, size=(64, 48))).hexdigest()


def tmp_files(root: Path) -> list[Path]:
    return list((root / ".cvtools" / "tmp").iterdir())


# ---- 1: a refused move loses nothing, and a stuck folder does not hold up another group ----------------
def test_unwritable_group_folder_loses_no_upload(settings: Settings, dataset_dir: Path, immutable: list[Path]) -> None:
    with LiveServer(settings) as s, httpx.Client(base_url=s.url) as c:
        c.post("/api/groups", json={"name": "a"})
        c.post("/api/groups", json={"name": "b"})
        make_immutable(immutable, dataset_dir / "a")
        r = upload(c, "a", [1])
        assert r.status_code == 507, r.text
        assert "not writable" in r.json()["detail"] and "Nothing was changed" in r.json()["detail"]
        assert listed(c, "a") == [] and not tmp_files(dataset_dir)
        # another, healthy group is not held up by the refused folder
        assert len(upload(c, "b", [2]).json()["added"]) == 1
        assert listed(c, "b") == [sha(2)]
        chattr("-i", dataset_dir / "a")
        # the image that never landed was not "seen": the same bytes can be uploaded again
        assert len(upload(c, "a", [1]).json()["added"]) == 1
    with LiveServer(settings) as s, httpx.Client(base_url=s.url) as c:
        time.sleep(0.5)  # the start-up rescan
        assert listed(c, "a") == [sha(1)] and listed(c, "b") == [sha(2)]
    assert_consistent(dataset_dir)


def test_move_across_file_systems_copies(
    settings: Settings, dataset_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group folder on another file system: rename answers EXDEV; the file is copied, synced, and the
    source removed."""
    real = os.rename

    def cross_device(src, dst):  # type: ignore[no-untyped-def]
        if "/.cvtools/tmp/" in str(src) and "/g/" in str(dst):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(src, dst)

    monkeypatch.setattr(os, "rename", cross_device)
    with LiveServer(settings) as s, httpx.Client(base_url=s.url) as c:
        c.post("/api/groups", json={"name": "g"})
        added = upload(c, "g", [5, 6]).json()["added"]
        assert len(added) == 2
        for img in added:
            assert imaging.sha256_file(Path(img["path"])) == img["sha256"]
        assert not tmp_files(dataset_dir)
    assert_consistent(dataset_dir)


# ---- 2: an upload never lands in a group that was renamed or deleted meanwhile ---------------------------
@pytest.mark.parametrize("action", ["rename", "delete"])
def test_upload_while_the_group_is_renamed_or_deleted(
    action: str, settings: Settings, dataset_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LiveServer(settings) as s, httpx.Client(base_url=s.url) as c:
        c.post("/api/groups", json={"name": "race2"})
        real_check = imaging.check_image
        done = threading.Event()

        def check_then_change(src, **kw):  # type: ignore[no-untyped-def]
            if not done.is_set():  # while the upload is being checked, the group changes
                done.set()
                with httpx.Client(base_url=s.url) as other:
                    if action == "rename":
                        assert other.patch("/api/groups/race2", json={"name": "race2b"}).status_code == 200
                    else:
                        assert other.delete("/api/groups/race2").status_code == 200
            return real_check(src, **kw)

        monkeypatch.setattr(imaging, "check_image", check_then_change)
        r = upload(c, "race2", list(range(10, 30)))
        monkeypatch.undo()
        assert r.status_code == 409, r.text
        assert "renamed or deleted" in r.json()["detail"]
        groups = [g["name"] for g in c.get("/api/groups").json()["groups"]]
        assert groups == (["race2b"] if action == "rename" else [])
        assert not (dataset_dir / "race2").exists()
        if action == "rename":
            assert listed(c, "race2b") == []
        assert not tmp_files(dataset_dir)
        assert len(upload(c, "race2b" if action == "rename" else "x", [10]).json().get("added", [])) == (
            1 if action == "rename" else 0
        )
    with LiveServer(settings) as s, httpx.Client(base_url=s.url) as c:
        time.sleep(0.5)
        assert [g["name"] for g in c.get("/api/groups").json()["groups"]] == (["race2b"] if action == "rename" else [])
    assert_consistent(dataset_dir)


# ---- 3: other websites cannot write, DNS rebinding cannot reach the app --------------------------------
def test_no_token_still_refuses_other_sites_and_foreign_hosts(settings: Settings, dataset_dir: Path) -> None:
    with LiveServer(settings) as s, httpx.Client(base_url=s.url) as c:
        evil = {"origin": "http://evil.example"}
        assert c.post("/api/groups", json={"name": "x"}, headers=evil).status_code == 403
        assert c.post("/api/groups", json={"name": "x"}, headers={"sec-fetch-site": "cross-site"}).status_code == 403
        assert c.post("/api/groups", json={"name": "g"}).status_code == 201  # a script (curl) without Origin
        r = upload(c, "g", [1], headers=evil)  # a no-cors form post from another page
        assert r.status_code == 403 and listed(c, "g") == []
        assert c.post("/api/index", headers=evil).status_code == 403
        assert c.post("/api/groups", json={"name": "h"}, headers={"origin": s.url}).status_code == 201
        # a page of a rebinding domain addresses the server by its own name: refused, reading too
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example"):
            r = c.get("/api/status", headers={"host": host})
            assert r.status_code == 421, (host, r.status_code)
        port = s.url.rsplit(":", 1)[1]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost"):
            assert c.get("/api/status", headers={"host": host}).status_code == 200, host
    assert sorted(p.name for p in dataset_dir.iterdir() if not p.name.startswith(".")) == ["g", "h"]


# ---- 4: files are read and written only inside the dataset -------------------------------------------
def test_symbolic_links_are_neither_adopted_served_nor_written_through(settings: Settings, tmp_path: Path) -> None:
    root = settings.dataset_dir
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(image_bytes(7))
    (root / "g").mkdir(parents=True)
    (root / "g" / "real.png").write_bytes(image_bytes(1))
    (root / "g" / "link.png").symlink_to(outside / "secret.png")
    (root / "ext").symlink_to(outside, target_is_directory=True)
    with LiveServer(settings) as s, httpx.Client(base_url=s.url) as c:
        deadline = time.monotonic() + 20
        while not listed(c, "g") and time.monotonic() < deadline:
            time.sleep(0.1)
        images = c.get("/api/groups/g/images").json()["images"]
        assert [i["filename"] for i in images] == ["real.png"]  # the link was not adopted
        job = next(j for j in c.get("/api/status").json()["jobs"] if j["kind"] == "rescan")
        assert any("symbolic link" in k["reason"] for k in job["result"]["skipped"]), job["result"]
        # an adopted file re-pointed at /etc/passwd is not served
        (root / "g" / "real.png").unlink()
        (root / "g" / "real.png").symlink_to("/etc/passwd")
        assert c.get(f"/api/images/{images[0]['id']}/file").status_code == 404
        assert c.get(f"/api/images/{images[0]['id']}/thumb").status_code == 404
        # a group over a symbolic link is refused; a group folder turned into one takes no upload
        assert c.post("/api/groups", json={"name": "ext"}).status_code == 400
        assert c.post("/api/groups", json={"name": "h"}).status_code == 201
        (root / "h").rmdir()
        (root / "h").symlink_to(outside, target_is_directory=True)
        r = upload(c, "h", [3])
        assert r.status_code == 400 and "symbolic link" in r.json()["detail"]
    assert sorted(p.name for p in outside.iterdir()) == ["secret.png"]


# ---- 5: a thumbnail is made once, and never answered empty --------------------------------------------
def test_concurrent_thumbnail_requests(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    with LiveServer(settings) as s, httpx.Client(base_url=s.url) as c:
        c.post("/api/groups", json={"name": "g"})
        img = upload(c, "g", [1]).json()["added"][0]
        real = imaging.thumbnail_jpeg
        calls = []

        def slow_thumb(src, **kw):  # type: ignore[no-untyped-def]
            calls.append(src)
            time.sleep(0.2)
            return real(src, **kw)

        monkeypatch.setattr(imaging, "thumbnail_jpeg", slow_thumb)
        barrier = threading.Barrier(20)
        answers: list[httpx.Response] = []

        def get() -> None:
            with httpx.Client(base_url=s.url) as one:
                barrier.wait()
                answers.append(one.get(f"/api/images/{img['id']}/thumb"))

        threads = [threading.Thread(target=get) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert [r.status_code for r in answers] == [200] * 20
    bodies = {r.content for r in answers}
    assert len(bodies) == 1 and next(iter(bodies)).startswith(b"\xff\xd8")
    assert len(calls) == 1


# ---- 6: of concurrent training requests exactly one starts ---------------------------------------------
def test_concurrent_training_requests(tiny_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from cvtools.vision.training.service import TrainingService

    real_split = TrainingService._split

    def slow_split(self):  # type: ignore[no-untyped-def]
        time.sleep(0.3)  # widens the window between "is a run active?" and starting one
        return real_split(self)

    monkeypatch.setattr(TrainingService, "_split", slow_split)
    with LiveServer(tiny_settings) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        fill_classes(c, per_class=4)
        barrier = threading.Barrier(4)
        codes: list[int] = []

        def train() -> None:
            with httpx.Client(base_url=s.url, timeout=60) as one:
                barrier.wait()
                codes.append(one.post("/api/train", json={"mode": "head", "params": {"epochs": 2}}).status_code)

        threads = [threading.Thread(target=train) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(codes) == [202, 409, 409, 409]
        for job in c.get("/api/jobs").json()["jobs"]:
            if job["kind"] == "train":
                c.post(f"/api/jobs/{job['id']}/cancel")
        time.sleep(0.5)


# ---- 7: a path too long for the file system is a bad request, not a storage error ----------------------
@pytest.fixture(scope="module")
def trained_server(tiny_convnext: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("adv-trained")
    s = Settings(dataset_dir=root / "dataset", neuronet=str(tiny_convnext), preload_model=False)
    with LiveServer(s) as server, httpx.Client(base_url=server.url, timeout=120) as c:
        fill_classes(c, per_class=6)
        run = run_training(c, "head", epochs=3)["id"]
        assert c.post("/api/models/promote", json={"run": run, "build_index": False}).status_code == 200
        yield server


def test_long_names_are_bad_requests(trained_server: LiveServer) -> None:
    s = trained_server
    with httpx.Client(base_url=s.url, timeout=60) as c:
        root = Path(c.get("/api/status").json()["dataset"]["dir"])
        good = c.get("/api/groups/red/images").json()["images"][0]["path"]
        long = str(root / ("n" * 300 + ".png"))
        r = c.get("/cv?" + long)
        assert r.status_code == 400 and "too long" in r.json()["detail"], r.text
        assert c.post("/api/analyze", data={"url": long}).status_code == 400
        r = c.post("/api/classify", json={"paths": [long, good, str(root / "nope.png")]})
        assert r.status_code == 200
        first, second, third = r.json()["results"]
        assert first["status"] == 400 and "too long" in first["error"]
        assert second["classification"][0][0] == "red"
        assert third["status"] == 404


# ---- 8: the token and the login ----------------------------------------------------------------------
TOKEN = "a-long-enough-token-4"


def test_short_token_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="at least 16"):
        load_settings(None, dataset_dir=str(tmp_path), auth_token="x")


def test_login_is_slow_to_guess_and_sessions_are_revocable(dataset_dir: Path) -> None:
    s = Settings(dataset_dir=dataset_dir, auth_token=TOKEN, preload_model=False)
    with LiveServer(s) as server, httpx.Client(base_url=server.url) as c:
        t0 = time.monotonic()
        for _ in range(5):
            assert c.post("/login", data={"token": "guess"}).status_code == 401
        assert time.monotonic() - t0 >= 5 * 0.9  # each wrong guess costs a second
        r = c.post("/login", data={"token": TOKEN})  # the right token too, once throttled
        assert r.status_code == 429 and "Too many" in r.text
    with LiveServer(s) as server, httpx.Client(base_url=server.url) as c:
        cookies = []
        for _ in range(2):
            r = c.post("/login", data={"token": TOKEN}, follow_redirects=False)
            assert r.status_code == 303
            cookies.append(r.cookies["cvtools_session"])
        assert cookies[0] != cookies[1] and TOKEN not in cookies[0]  # random, not derived from the token
        c.cookies.clear()
        jar = {"cvtools_session": cookies[0]}
        assert c.get("/api/status", cookies=jar).status_code == 200
        c.post("/logout", cookies=jar)
        assert c.get("/api/status", cookies=jar).status_code == 401  # revoked
        assert c.get("/api/status", cookies={"cvtools_session": cookies[1]}).status_code == 200
        page = c.get("/login?error=Your+account+is+locked,+call+555-0100").text
        assert "555-0100" not in page
        assert "Wrong token." in c.get("/login?error=wrong").text


# ---- 9: slow and greedy clients ----------------------------------------------------------------------
def test_slow_headers_are_cut_off(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_server, "HEAD_TIMEOUT_S", 1.0)
    with LiveServer(settings) as s:
        port = int(s.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            t0 = time.monotonic()
            closed = False
            for _ in range(30):  # a header byte every 0.2 s: never finishing
                try:
                    sock.sendall(b"X")
                except OSError:
                    closed = True
                    break
                sock.settimeout(0.2)
                try:
                    if sock.recv(100) == b"":
                        closed = True
                        break
                except TimeoutError:
                    pass
            assert closed and time.monotonic() - t0 < 4
        assert s.server.config.limit_concurrency == web_server.MAX_CONNECTIONS


def test_stalled_body_and_oversized_json(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from cvtools.web import app as app_mod

    monkeypatch.setattr(app_mod, "BODY_IDLE_TIMEOUT_S", 1.0)
    with LiveServer(settings) as s:
        port = int(s.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /api/groups HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"name": '
            )
            assert sock.recv(1000).startswith(b"HTTP/1.1 408")
        # a request without a body is not timed: an event stream stays open past the body timeout
        with httpx.Client(base_url=s.url, timeout=10) as c, c.stream("GET", "/api/events") as stream:
            lines = stream.iter_lines()
            assert next(lines) == ": connected"
            time.sleep(1.5)
            assert c.post("/api/groups", json={"name": "later"}).status_code == 201
            assert any(line.startswith("event: dataset") for line, _ in zip(lines, range(20), strict=False))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            t0 = time.monotonic()
            sock.sendall(
                b"POST /api/images/status HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 62914560\r\n\r\n"
            )
            assert sock.recv(1000).startswith(b"HTTP/1.1 413") and time.monotonic() - t0 < 2


def test_group_names_that_clash_elsewhere(client) -> None:  # type: ignore[no-untyped-def]
    assert client.post("/api/groups", json={"name": "Case"}).status_code == 201
    r = client.post("/api/groups", json={"name": "case"})
    assert r.status_code == 409 and "ignore case" in r.json()["detail"]
    for name in ("CON", "nul", "com1", "LPT9.txt", "aux.png"):
        r = client.post("/api/groups", json={"name": name})
        assert r.status_code == 400 and "reserved" in r.json()["detail"], name
    assert client.post("/api/groups", json={"name": "other"}).status_code == 201
    assert client.patch("/api/groups/other", json={"name": "CASE"}).status_code == 409
    assert client.patch("/api/groups/other", json={"name": "prn"}).status_code == 400
    assert [g["name"] for g in client.get("/api/groups").json()["groups"]] == ["Case", "other"]
