"""Faults: the disk full or the folder read-only mid-operation, a deleted catalog. A clear error,
nothing lost, and the dataset consistent once the fault is gone. (A corrupt production model:
test_learning.test_corrupt_production_falls_back_with_message.)"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cvtools import dataset as dataset_mod
from cvtools.settings import Settings
from cvtools.web import create_app

from .conftest import wait_jobs
from .helpers import assert_consistent, image_bytes
from .test_api_dataset import snapshot


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
    assert (
        r.status_code == 507 and "the disk is full" in r.json()["detail"] and "Nothing was lost" in r.json()["detail"]
    )
    assert snapshot(dataset_dir) == before
    assert not list((dataset_dir / ".cvtools" / "tmp").iterdir())  # the partial upload is gone


def test_read_only_folder_during_a_move(settings: Settings, dataset_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        wait_jobs(c)
        ids = _seed(c)
        files_before = _files(dataset_dir)
        real_rename = os.rename
        calls = {"n": 0}

        def read_only(src, dst):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] > 2:  # the folder turns read-only after two of the six moves
                raise OSError(errno.EROFS, "Read-only file system")
            return real_rename(src, dst)

        monkeypatch.setattr(dataset_mod.os, "rename", read_only)
        r = c.post("/api/images/move", json={"ids": ids, "group": "b"})
        assert r.status_code == 507 and "not writable" in r.json()["detail"], r.text
        assert _files(dataset_dir) == files_before  # nothing lost, nothing duplicated
        monkeypatch.setattr(dataset_mod.os, "rename", real_rename)
        # writable again: the next operation completes the recorded moves
        assert c.post("/api/groups", json={"name": "c"}).status_code == 201
        assert c.get("/api/groups/b/images").json()["total"] == 6
    assert_consistent(dataset_dir)
    assert _files(dataset_dir) == files_before


def test_read_only_folder_then_restart(settings: Settings, dataset_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fault outlives the process: the restart rolls the recorded moves forward."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        wait_jobs(c)
        ids = _seed(c, 4)
        monkeypatch.setattr(
            dataset_mod.os, "rename", lambda s, d: (_ for _ in ()).throw(OSError(errno.EACCES, "denied"))
        )
        assert c.post("/api/images/status", json={"ids": ids, "status": "deleted"}).status_code == 507
    monkeypatch.undo()
    with TestClient(create_app(settings)) as c:
        wait_jobs(c)
        assert c.get("/api/groups/a/images?status=deleted").json()["total"] == 4
    assert_consistent(dataset_dir)


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
