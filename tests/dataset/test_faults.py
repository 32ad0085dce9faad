"""Faults: the disk full or the folder read-only mid-operation, a deleted catalog. A clear error,
nothing lost, and the dataset consistent once the fault is gone. (A corrupt production model:
test_learning.test_corrupt_production_falls_back_with_message.)"""

from __future__ import annotations

import errno
import hashlib
import os
import time
from pathlib import Path

import pytest

from cvtools.settings import Settings
from cvtools.web import create_app

from ..conftest import wait_jobs
from ..helpers import TestClient, assert_consistent, image_bytes, snapshot


def _files(root: Path) -> list[str]:
    """The sha256 of every image file under the dataset (any status), sorted: lost or doubled shows."""
    return sorted(
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and p.suffix in (".png", ".jpg") and "thumbs" not in p.parts
    )


def _seed(c: TestClient, n: int = 6) -> list[str]:
    c.post("/api/groups", json={"name": "a"})
    c.post("/api/groups", json={"name": "b"})
    files = [("files", (f"i{i}.png", image_bytes(i), "image/png")) for i in range(n)]
    return [x["id"] for x in c.post("/api/groups/a/images", files=files).json()["added"]]


def test_disk_full_during_upload(client: TestClient, dataset_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(client)
    before = snapshot(dataset_dir)
    import shutil

    real = shutil.copyfileobj

    def full(src, dst, length=0):  # type: ignore[no-untyped-def]
        dst.write(b"\x89PNG partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", full)
    with TestClient(client.app, raise_server_exceptions=False) as c:
        r = c.post("/api/groups/a/images", files=[("files", ("n.png", image_bytes(99), "image/png"))])
    monkeypatch.setattr(shutil, "copyfileobj", real)
    assert r.status_code == 507 and "the disk is full" in r.json()["detail"]
    assert "Nothing was changed" in r.json()["detail"]
    assert snapshot(dataset_dir) == before
    assert not list((dataset_dir / ".cvtools" / "tmp").iterdir())  # the partial upload is gone


def test_read_only_folder_during_a_move(settings: Settings, dataset_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder turns read-only after two of six moves: the two are put back, the rows restored, and
    the answer says that nothing changed; once writable, the same request succeeds."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        wait_jobs(c)
        ids = _seed(c)
        files_before = _files(dataset_dir)
        real_rename = os.rename
        calls = {"n": 0}

        def read_only(src, dst):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if 2 < calls["n"] <= 3:  # the third move fails; moving the first two back works
                raise OSError(errno.EROFS, "Read-only file system")
            return real_rename(src, dst)

        monkeypatch.setattr(os, "rename", read_only)
        r = c.post("/api/images/move", json={"ids": ids, "group": "b"})
        assert r.status_code == 507, r.text
        assert "not writable" in r.json()["detail"] and "Nothing was changed" in r.json()["detail"]
        assert _files(dataset_dir) == files_before  # nothing lost, nothing duplicated
        assert c.get("/api/groups/a/images").json()["total"] == 6  # as before the request
        assert c.get("/api/groups/b/images").json()["total"] == 0
        assert_consistent(dataset_dir)
        monkeypatch.setattr(os, "rename", real_rename)
        assert c.post("/api/images/move", json={"ids": ids, "group": "b"}).json() == {"moved": 6}
        assert c.get("/api/groups/b/images").json()["total"] == 6
    assert_consistent(dataset_dir)
    assert _files(dataset_dir) == files_before


def test_move_neither_done_nor_undone_is_completed_at_restart(
    settings: Settings, dataset_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two moves done, then the disk refuses everything, putting back as well: the change stays recorded,
    the answer says so, and the next start completes it."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        wait_jobs(c)
        ids = _seed(c, 4)
        files_before = _files(dataset_dir)
        real_rename = os.rename
        calls = {"n": 0}

        def failing(src, dst):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] > 2:
                raise OSError(errno.EACCES, "denied")
            return real_rename(src, dst)

        monkeypatch.setattr(os, "rename", failing)
        r = c.post("/api/images/status", json={"ids": ids, "status": "deleted"})
        assert r.status_code == 507 and "will be completed" in r.json()["detail"], r.text
        assert _files(dataset_dir) == files_before
    monkeypatch.undo()
    with TestClient(create_app(settings)) as c:
        wait_jobs(c)
        assert c.get("/api/groups/a/images?status=deleted").json()["total"] == 4
    assert_consistent(dataset_dir)
    assert _files(dataset_dir) == files_before


def test_deleted_catalog_is_rebuilt_with_a_warning(settings: Settings, dataset_dir: Path) -> None:
    with TestClient(create_app(settings)) as c:
        wait_jobs(c)
        ids = _seed(c, 6)
        c.post("/api/images/status", json={"ids": ids[:2], "status": "new"})
        group_files = sorted(p.name for p in (dataset_dir / "a").iterdir())
    for name in ("catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm"):
        (dataset_dir / ".cvtools" / name).unlink(missing_ok=True)
    with TestClient(create_app(settings)) as c:
        wait_jobs(c)
        job = next(j for j in c.get("/api/status").json()["jobs"] if j["kind"] == "rescan")
        assert "catalog was missing" in job["progress"]["message"], job
        assert job["result"]["warnings"] and job["result"]["adopted"] == 4
        listed = sorted(i["filename"] for i in c.get("/api/groups/a/images").json()["images"])
        assert listed == group_files  # Group images intact, in their group
    recovered = list((dataset_dir / ".cvtools" / "recovered").iterdir())
    assert len(recovered) == 2  # the New ones kept, not lost
    assert_consistent(dataset_dir)


def test_group_folder_unwritable_mid_run(settings: Settings, dataset_dir: Path) -> None:
    """Uploads into three groups and moves into one while that group's folder turns immutable (chattr +i)
    and back: every image that got a 2xx or a 507 is either fully present or fully absent, and an absent
    one can be uploaded again. The restart finds everything consistent."""
    import subprocess
    import threading

    import httpx

    from ..conftest import LiveServer

    def chattr(flag: str) -> bool:
        return subprocess.run(["chattr", flag, str(dataset_dir / "b")], capture_output=True).returncode == 0

    answers: list[tuple[int, str, int]] = []  # (seed, group, status code)
    moves: list[int] = []
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        for g in ("a", "b", "c"):
            c.post("/api/groups", json={"name": g})
        if not chattr("+i"):
            pytest.skip("chattr +i is not supported on this file system")
        chattr("-i")
        lock = threading.Lock()

        def uploader(group: str, seeds: range) -> None:
            with httpx.Client(base_url=server.url, timeout=60) as one:
                for seed in seeds:
                    files = [("files", (f"{seed}.png", image_bytes(seed), "image/png"))]
                    r = one.post(f"/api/groups/{group}/images", files=files)
                    with lock:
                        answers.append((seed, group, r.status_code))
                    assert r.status_code in (200, 507), r.text

        def mover() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as one:
                for _ in range(15):
                    ids = [i["id"] for i in one.get("/api/groups/a/images?limit=2").json()["images"]]
                    if ids:
                        moves.append(one.post("/api/images/move", json={"ids": ids, "group": "b"}).status_code)
                    time.sleep(0.02)

        threads = [
            threading.Thread(target=uploader, args=(g, range(1000 * (k + 1), 1000 * (k + 1) + 25)))
            for k, g in enumerate("abc")
        ]
        threads.append(threading.Thread(target=mover))
        for t in threads:
            t.start()
        while len(answers) < 10:
            time.sleep(0.01)
        chattr("+i")  # the folder of group b turns unwritable mid-run ...
        while len(answers) < 45:
            time.sleep(0.01)
        chattr("-i")  # ... and writable again
        for t in threads:
            t.join()
        refused = [a for a in answers if a[2] == 507]
        assert refused and all(g == "b" for _, g, _ in refused), answers
        assert 507 in moves and set(moves) <= {200, 507}
        present = {i["sha256"]: i for g in "abc" for i in c.get(f"/api/groups/{g}/images?limit=1000").json()["images"]}
        for seed, group, code in answers:
            digest = hashlib.sha256(image_bytes(seed)).hexdigest()
            if code == 200:
                assert (
                    digest in present
                    and hashlib.sha256(Path(present[digest]["path"]).read_bytes()).hexdigest() == digest
                )
            else:
                assert digest not in present  # fully absent ...
                files = [("files", (f"{seed}.png", image_bytes(seed), "image/png"))]
                assert len(c.post(f"/api/groups/{group}/images", files=files).json()["added"]) == 1  # ... and back
        assert not list((dataset_dir / ".cvtools" / "tmp").iterdir())
    chattr("-i")
    with LiveServer(settings) as server, httpx.Client(base_url=server.url) as c:
        time.sleep(0.5)
        total = sum(c.get(f"/api/groups/{g}/images").json()["total"] for g in "abc")
        assert total == 75
    assert_consistent(dataset_dir)
