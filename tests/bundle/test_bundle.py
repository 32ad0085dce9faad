"""The bundle answers as the app's /cv does, needs no torch, and refuses a bundle it cannot trust."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cvtools.bundle import BundleError, load_bundle

from .conftest import Trained

NO_TORCH = """
import json, sys
sys.modules["torch"] = None  # any import of torch now fails
from cvtools.bundle import load_bundle
b = load_bundle(sys.argv[1])
out = {}
for name in json.loads(sys.argv[3]):
    data = open(sys.argv[2] + "/" + name, "rb").read()
    out[name] = b.cv(data, 0, cv_unknown=True)
assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
print(json.dumps(out))
"""


def assert_same(app: list, got: list) -> None:
    assert [g for g, _ in got] == [g for g, _ in app]
    assert got[0][0] == "unknown" and abs(got[0][1] - app[0][1]) <= 2e-4  # the score is rounded to 4 places
    assert max(abs(a[1] - b[1]) for a, b in zip(app[1:], got[1:], strict=True)) <= 1e-5


def test_parity_without_torch(trained: Trained) -> None:
    names = sorted(trained.images)
    queries = trained.settings.public_dirs[0]
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(trained.bundle), str(queries), json.dumps(names)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    for name in names:
        assert_same(trained.app_cv[name], got[name])


def test_zip_from_the_api_and_top_n(trained: Trained, tmp_path: Path) -> None:
    z = tmp_path / "b.zip"
    z.write_bytes(trained.zip_bytes)
    assert sorted(zipfile.ZipFile(z).namelist()) == sorted(p.name for p in trained.bundle.iterdir())
    b = load_bundle(z)
    name = sorted(trained.images)[0]
    top1 = b.cv(trained.images[name], 1)
    assert top1 == [trained.app_cv[name][1]] or (
        top1[0][0] == trained.app_cv[name][1][0] and abs(top1[0][1] - trained.app_cv[name][1][1]) <= 1e-5
    )
    assert len(b.cv(trained.images[name], 0)) == len(b.classes)


def _copy(trained: Trained, tmp_path: Path) -> Path:
    folder = tmp_path / "copy"
    folder.mkdir()
    for p in trained.bundle.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    return folder


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("version", "format 99"),
        ("flip", "does not match its checksum"),
        ("missing", "model.onnx is missing"),
        ("manifest", "not JSON"),
        ("other", "not a CV Tools bundle"),
    ],
)
def test_refuses_foreign_or_corrupt(trained: Trained, tmp_path: Path, damage: str, message: str) -> None:
    folder = _copy(trained, tmp_path)
    manifest = folder / "bundle.json"
    meta = json.loads(manifest.read_text())
    if damage == "version":
        meta["format_version"] = 99
        manifest.write_text(json.dumps(meta))
    elif damage == "flip":
        data = bytearray((folder / "model.onnx").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (folder / "model.onnx").write_bytes(bytes(data))
    elif damage == "missing":
        (folder / "model.onnx").unlink()
    elif damage == "manifest":
        manifest.write_text("{not json")
    else:
        meta["format"] = "something-else"
        manifest.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=message):
        load_bundle(folder)


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no bundle"):
        load_bundle(tmp_path / "nothing")
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(BundleError, match="not a bundle folder or zip"):
        load_bundle(tmp_path / "junk.zip")
