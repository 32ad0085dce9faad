"""The bad-input corpus: every named case gets its 4xx JSON error (or, for an uploaded file, a listed
skip reason), never a 500 or a traceback, and changes nothing in the dataset folder."""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cvtools.settings import Settings
from cvtools.web import create_app

from ..conftest import fill_classes, run_training, wait_jobs
from ..helpers import TestClient, image_bytes, snapshot


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(w: int = 100_000, h: int = 100_000) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + _chunk(b"IEND", b"")
    )


def gif_bomb() -> bytes:
    return (
        b"GIF89a"
        + struct.pack("<HH", 65535, 65535)
        + b"\x00\x00\x00"
        + b",\x00\x00\x00\x00\xff\xff\xff\xff\x00\x02\x02D\x01\x00;"
    )


def bmp_bomb() -> bytes:
    w, h = 60_000, 60_000
    header = b"BM" + struct.pack("<IHHI", 54, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return header + info + b"\0" * 64


def webp_bomb() -> bytes:
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (16382).to_bytes(3, "little") * 2
    body = b"WEBP" + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def jpeg_bomb() -> bytes:
    good = image_bytes(1, fmt="JPEG")
    i = good.index(b"\xff\xc0")  # SOF0: precision, height, width
    return good[: i + 5] + struct.pack(">HH", 65000, 65000) + good[i + 9 :]


def truncated(fmt: str) -> bytes:
    data = image_bytes(3, size=(200, 200), fmt=fmt)
    return data[: len(data) // 3]


def png_with_jpeg_magic() -> bytes:
    return b"\xff\xd8\xff\xe0" + image_bytes(4)[4:]


@dataclass
class Case:
    name: str
    method: str
    path: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    expect: tuple[int, ...] = (400,)
    skipped: bool = False  # an upload answered 200 with the file listed as skipped


def upload(name: str, data: bytes, filename: str = "x.png") -> Case:
    return Case(
        name, "POST", "/api/groups/red/images", {"files": [("files", (filename, data, "image/png"))]}, (200,), True
    )


def cv(name: str, query: str, expect: tuple[int, ...] = (403,)) -> Case:
    return Case(name, "GET", "/cv?" + query, {}, expect)


def cases(env: dict[str, str]) -> list[Case]:
    big = b"\0" * (2 * 1024 * 1024 + 10)  # over max_upload_mb = 2
    return [
        # group names and paths
        Case("group name '..'", "POST", "/api/groups", {"json": {"name": ".."}}),
        Case("group name with a slash", "POST", "/api/groups", {"json": {"name": "a/b"}}),
        Case("group name with a backslash", "POST", "/api/groups", {"json": {"name": "a\\b"}}),
        Case("group name starting with a dot", "POST", "/api/groups", {"json": {"name": ".hidden"}}),
        Case("group name with a control character", "POST", "/api/groups", {"json": {"name": "a\x07b"}}),
        Case("group name with NUL", "POST", "/api/groups", {"json": {"name": "a\x00b"}}),
        Case("group name with a right-to-left override", "POST", "/api/groups", {"json": {"name": "gpj\u202eexe"}}),
        Case("group name with a line separator", "POST", "/api/groups", {"json": {"name": "a\u2028b"}}),
        Case("empty group name", "POST", "/api/groups", {"json": {"name": "  "}}),
        Case("group name of 10,000 characters", "POST", "/api/groups", {"json": {"name": "é" * 10_000}}),
        Case("parent that does not exist", "POST", "/api/groups", {"json": {"name": "x", "parent": "nope"}}, (404,)),
        Case("parent by traversal", "POST", "/api/groups", {"json": {"name": "x", "parent": "../.."}}, (400, 404)),
        Case("rename to '..'", "PATCH", "/api/groups/red", {"json": {"name": ".."}}),
        Case("rename with a slash", "PATCH", "/api/groups/red", {"json": {"name": "../../etc"}}),
        Case("list a traversal path", "GET", "/api/groups/..%2F..%2Fetc/images", {}, (400, 404)),
        Case("delete a traversal path", "DELETE", "/api/groups/../red", {}, (400, 404)),
        Case("delete the state folder", "DELETE", "/api/groups/.cvtools", {}, (400, 404)),
        # uploaded files
        upload("not an image (text)", b"hello, I am text", "notes.png"),
        upload("empty file", b""),
        upload("SVG (XML) image", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "x.svg"),
        upload("truncated PNG", truncated("PNG")),
        upload("truncated JPEG", truncated("JPEG"), "x.jpg"),
        upload("truncated GIF", truncated("GIF"), "x.gif"),
        upload("wrong magic bytes (PNG body, JPEG magic)", png_with_jpeg_magic(), "x.jpg"),
        upload("PNG decompression bomb (100000 x 100000)", png_bomb()),
        upload("GIF decompression bomb (65535 x 65535)", gif_bomb(), "x.gif"),
        upload("BMP decompression bomb (60000 x 60000)", bmp_bomb(), "x.bmp"),
        upload("WebP decompression bomb (16383 x 16383)", webp_bomb(), "x.webp"),
        upload("JPEG decompression bomb (65000 x 65000)", jpeg_bomb(), "x.jpg"),
        Case(
            "upload body over the limit",
            "POST",
            "/api/groups/red/images",
            {"files": [("files", ("big.png", big, "image/png"))]},
            (413,),
        ),
        Case("multipart without files", "POST", "/api/groups/red/images", {"data": {"status": "group"}}, (400, 422)),
        Case(
            "upload with a bad status",
            "POST",
            "/api/groups/red/images",
            {"files": [("files", ("a.png", image_bytes(9), "image/png"))], "data": {"status": "lost"}},
            (422,),
        ),
        # JSON bodies: malformed, wrong types, huge numbers
        Case(
            "malformed JSON",
            "POST",
            "/api/images/status",
            {"content": b'{"ids": [', "headers": {"content-type": "application/json"}},
            (400, 422),
        ),
        Case("JSON that is a list", "POST", "/api/groups", {"json": ["red"]}, (400, 422)),
        Case("name of the wrong type", "POST", "/api/groups", {"json": {"name": 123}}, (400, 422)),
        Case("ids not a list", "POST", "/api/images/status", {"json": {"ids": "abc", "status": "deleted"}}, (400, 422)),
        Case("unknown status", "POST", "/api/images/status", {"json": {"ids": [], "status": "gone"}}, (422,)),
        Case(
            "ids that do not exist",
            "POST",
            "/api/images/status",
            {"json": {"ids": ["nope"], "status": "deleted"}},
            (404,),
        ),
        Case(
            "100,001 ids",
            "POST",
            "/api/images/status",
            {"json": {"ids": [str(i) for i in range(100_001)], "status": "deleted"}},
            (400, 413),
        ),
        Case(
            "move to a group that does not exist",
            "POST",
            "/api/images/move",
            {"json": {"ids": [], "group": "nope"}},
            (404,),
        ),
        Case("limit of 10**30", "GET", "/api/groups/red/images?limit=" + "1" + "0" * 30, {}, (400, 422)),
        Case("negative offset", "GET", "/api/groups/red/images?offset=-5", {}, (400, 422)),
        Case(
            "epochs of 10**12", "POST", "/api/train", {"json": {"mode": "head", "params": {"epochs": 10**12}}}, (422,)
        ),
        Case("epochs as text", "POST", "/api/train", {"json": {"mode": "head", "params": {"epochs": "many"}}}, (422,)),
        Case(
            "learning rate NaN",
            "POST",
            "/api/train",
            {
                "content": b'{"mode": "head", "params": {"head_learning_rate": NaN}}',
                "headers": {"content-type": "application/json"},
            },
            (400, 422),
        ),
        Case(
            "unknown training parameter",
            "POST",
            "/api/train",
            {"json": {"mode": "head", "params": {"rm -rf": 1}}},
            (422,),
        ),
        Case("unknown training mode", "POST", "/api/train", {"json": {"mode": "magic"}}, (400, 422)),
        Case("grab count 0", "POST", "/api/groups/red/grab", {"json": {"query": "cats", "count": 0}}, (400, 422)),
        Case(
            "grab count 10**9", "POST", "/api/groups/red/grab", {"json": {"query": "cats", "count": 10**9}}, (400, 422)
        ),
        Case(
            "grab with an empty query", "POST", "/api/groups/red/grab", {"json": {"query": "", "count": 5}}, (400, 422)
        ),
        Case("label mode that does not exist", "PUT", "/api/dataset/mode", {"json": {"label_mode": "both"}}, (422,)),
        Case("exclusive of the wrong type", "PATCH", "/api/groups/red", {"json": {"exclusive": "very"}}, (400, 422)),
        Case("export in an unknown format", "GET", f"/api/models/{env['run']}/export?format=exe", {}, (400, 422)),
        Case(
            "promote a run that does not exist",
            "POST",
            "/api/models/promote",
            {"json": {"run": "../../etc"}},
            (400, 404),
        ),
        Case("anomalies of an unknown type", "GET", "/api/anomalies?type=weird", {}, (422,)),
        Case("job that does not exist", "GET", "/api/jobs/../../etc", {}, (404,)),
        Case("image file that does not exist", "GET", "/api/images/..%2F..%2Fetc%2Fpasswd/file", {}, (404,)),
        # /cv: paths, symlinks, SSRF targets, bodies
        cv("path outside public_dirs", "/etc/passwd"),
        cv("traversal out of a public folder", env["public"] + "/../../../../etc/passwd"),
        cv("symlink escaping a public folder", env["public"] + "/escape.png"),
        cv("file:// URL", "file:///etc/passwd", (400, 403)),
        cv("loopback URL", "http://127.0.0.1:1/x.png"),
        cv("cloud metadata URL", "http://169.254.169.254/latest/meta-data/"),
        cv("private network URL", "http://10.0.0.1/x.png"),
        cv("IPv6 loopback URL", "http://[::1]/x.png"),
        cv("IPv4-mapped IPv6 loopback URL", "http://[::ffff:127.0.0.1]/x.png"),
        cv("decimal-encoded loopback URL", "http://2130706433/x.png"),
        cv("localhost by name", "http://localhost/x.png"),
        cv("gopher URL", "gopher://127.0.0.1:70/_x", (400, 403)),
        cv("ftp URL", "ftp://example.com/x.png", (400, 403)),
        cv("a folder, not a file", env["public"], (400, 403, 404)),
        cv("bad :n suffix", env["public"] + "/ok.png:abc", (400, 403, 404)),
        cv("empty query", "", (400,)),
        Case("/cv body that is not an image", "POST", "/cv", {"content": b"plain text, not pixels"}, (415,)),
        Case("/cv empty body", "POST", "/cv", {"content": b""}, (400, 415)),
        Case("/cv body that is a PNG bomb", "POST", "/cv", {"content": png_bomb()}, (413, 415)),
        Case("/cv n of 10**30", "POST", "/cv?n=" + "9" * 31, {"content": image_bytes(1)}, (400, 422)),
        Case("classify with no items", "POST", "/api/classify", {"json": {"paths": []}}),
        Case(
            "classify with 10,000 items", "POST", "/api/classify", {"json": {"paths": ["/x.png"] * 10_000}}, (400, 413)
        ),
        Case(
            "analyze with a text file",
            "POST",
            "/api/analyze",
            {"files": {"file": ("a.png", b"text", "image/png")}},
            (400, 415),
        ),
    ]


@pytest.fixture(scope="module")
def env(tiny_convnext: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("bad")
    public = root / "public"
    public.mkdir()
    (public / "ok.png").write_bytes(image_bytes(1))
    secret = root / "secret.png"
    secret.write_bytes(image_bytes(2))
    os.symlink(secret, public / "escape.png")
    s = Settings(
        dataset_dir=root / "dataset",
        neuronet=str(tiny_convnext),
        preload_model=False,
        public_dirs=[public],
        max_upload_mb=2,
    )
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        wait_jobs(c)
        fill_classes(c, per_class=4)
        run = run_training(c, "head", epochs=2)
        c.post("/api/models/promote", json={"run": run["id"], "build_index": False})
        wait_jobs(c)
        yield {"client": c, "root": s.dataset_dir, "public": str(public), "run": run["id"], "secret": str(secret)}


def _all_cases() -> list[Case]:
    return cases({"public": "/PUBLIC", "run": "RUN"})


@pytest.mark.parametrize("case", _all_cases(), ids=lambda c: c.name)
def test_bad_input(case: Case, env: dict[str, Any]) -> None:
    case = next(c for c in cases(env) if c.name == case.name)  # with this run's paths
    client: TestClient = env["client"]
    before = snapshot(env["root"])
    r = client.request(case.method, case.path, **case.kwargs)
    assert r.status_code in case.expect, (case.name, r.status_code, r.text[:300])
    body = r.json()
    text = json.dumps(body)
    assert "Traceback" not in text and env["secret"] not in text and "site-packages" not in text
    if case.skipped:
        assert body["added"] == [] and len(body["skipped"]) == 1 and body["skipped"][0]["reason"], body
    else:
        assert 400 <= r.status_code < 500 and isinstance(body["detail"], str) and body["detail"], body
    wait_jobs(client)
    assert snapshot(env["root"]) == before, case.name


def test_corpus_is_large_enough() -> None:
    names = [c.name for c in _all_cases()]
    assert len(names) >= 40 and len(set(names)) == len(names)


def test_hostile_file_name_is_made_safe(env: dict[str, Any]) -> None:
    """A valid image under a hostile name is taken in, under a name that stays in its group folder."""
    client: TestClient = env["client"]
    files = [("files", ("../../\x00evil\n.png", image_bytes(7), "image/png"))]
    added = client.post("/api/groups/red/images", files=files).json()["added"]
    assert len(added) == 1
    path = Path(added[0]["path"])
    assert path.parent == env["root"] / "red" and path.is_file()
    assert not any(ch in added[0]["filename"] for ch in "/\\\x00\n")
    client.post("/api/images/status", json={"ids": [added[0]["id"]], "status": "deleted"})
