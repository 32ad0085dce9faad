"""A model bundle: one folder (or its zip) that answers as the app's production model does, with no
dataset, no catalog and no torch: model.onnx (normalised batch -> probabilities and features, the
mirror-image averaging inside), bundle.json (classes, preprocessing, decoding, multi-label layout and
thresholds, checksums) and the open-set calibration."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .. import __version__, imaging
from ..cvquery import cv_list
from ..vision.answers import Ranked, answered, label_set, rank, verdict
from ..vision.labelsets import Layout
from ..vision.openset import Calibration
from ..vision.ort_session import open_session
from ..vision.preprocess import Preprocess

FORMAT = "cvtools-bundle"
FORMAT_VERSION = 1
MANIFEST = "bundle.json"


class BundleError(ValueError):
    """A bundle that cannot be used: missing, corrupt, or written in another format version."""


def read_files(path: Path) -> dict[str, bytes]:
    """Every file of a bundle folder or zip, by name (a bundle is a few files, read once)."""
    try:
        if path.is_dir():
            return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}
        with zipfile.ZipFile(path) as z:
            return {Path(n).name: z.read(n) for n in z.namelist() if not n.endswith("/")}
    except FileNotFoundError:
        raise BundleError(f"no bundle at {path}") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleError(f"{path} is not a bundle folder or zip ({type(exc).__name__}: {exc})") from None


def _manifest(files: dict[str, bytes]) -> dict[str, Any]:
    if MANIFEST not in files:
        raise BundleError(f"not a CV Tools bundle: no {MANIFEST}")
    try:
        meta = json.loads(files[MANIFEST])
    except ValueError:
        raise BundleError(f"corrupt bundle: {MANIFEST} is not JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BundleError(f"not a CV Tools bundle: {MANIFEST} does not say format {FORMAT!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"this bundle is format {meta.get('format_version')} (written by CV Tools "
            f"{meta.get('cvtools_version', '?')}); CV Tools {__version__} reads format {FORMAT_VERSION}: "
            "export it again from the app"
        )
    for name, digest in meta.get("files", {}).items():
        if name not in files:
            raise BundleError(f"corrupt bundle: {name} is missing")
        if hashlib.sha256(files[name]).hexdigest() != digest:
            raise BundleError(f"corrupt bundle: {name} does not match its checksum")
    return meta


def _session(model: bytes, threads: int | None) -> Any:
    try:
        return open_session(model, threads=threads, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a broken graph
        raise BundleError(f"corrupt bundle: model.onnx does not load ({type(exc).__name__})") from None


@dataclass
class Bundle:
    meta: dict[str, Any]
    classes: list[str]
    preprocess: Preprocess
    session: Any
    calibration: Calibration | None
    layout: Layout | None
    thresholds: np.ndarray | None
    max_pixels: int

    @classmethod
    def from_files(cls, files: dict[str, bytes], *, threads: int | None = None) -> Bundle:
        meta = _manifest(files)
        pre = meta["preprocess"]
        preprocess = Preprocess(pre["size"], pre["crop_pct"], tuple(pre["mean"]), tuple(pre["std"]))
        calibration = None
        if meta.get("calibration"):
            calibration = Calibration.from_parts(
                json.loads(files["calibration.json"]), io.BytesIO(files["calibration.npz"])
            )
        multi = meta.get("multi")
        layout = Layout.from_json(multi["layout"]) if multi else None
        thresholds = np.array(multi["thresholds"], dtype=np.float32) if multi else None
        session = _session(files["model.onnx"], threads)
        return cls(
            meta, list(meta["classes"]), preprocess, session, calibration, layout, thresholds, meta["max_pixels"]
        )

    # ---- decoding and the forward pass ---------------------------------------------------------
    def decode(self, data: bytes) -> Image.Image:
        """The app's decoding: the same size limit and the same reduced decoding of big images."""
        return imaging.load_query(data, max_pixels=self.max_pixels, min_side=self.preprocess.resize_side())

    def array(self, image: Image.Image) -> np.ndarray:
        return self.preprocess.array(self.preprocess.center(image))

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, features) for a normalised batch [n, 3, size, size]."""
        probs, feats = self.session.run(["probabilities", "features"], {"pixel_values": batch.astype(np.float32)})
        return probs, feats

    # ---- answers -------------------------------------------------------------------------------
    def ranked(self, probs: np.ndarray) -> Ranked:
        return rank(self.classes, probs)

    def verdict(self, probs: np.ndarray, feats: np.ndarray, *, unknown_detection: bool = True) -> dict[str, Any]:
        labels = label_set(self.classes, probs, self.layout, self.thresholds) if self.layout else None
        return verdict(probs, feats, labels=labels, calibration=self.calibration, unknown_detection=unknown_detection)

    def cv_answer(
        self, probs: np.ndarray, feats: np.ndarray, n: int | None, *, cv_unknown: bool = False
    ) -> list[list[Any]]:
        """The /cv list for one image's outputs, as the app writes it."""
        score = self.verdict(probs, feats).get("score") if cv_unknown else None
        return cv_list(self.ranked(probs), n, score)

    def cv(self, data: bytes, n: int | None = None, *, cv_unknown: bool = False) -> list[list[Any]]:
        probs, feats = self.run(self.array(self.decode(data))[None])
        return self.cv_answer(probs[0], feats[0], n, cv_unknown=cv_unknown)

    def record(self, probs: np.ndarray, feats: np.ndarray, *, unknown_detection: bool = True) -> dict[str, Any]:
        """One image's full answer, as an item of POST /api/classify: classification and verdict."""
        return answered(self.ranked(probs), self.verdict(probs, feats, unknown_detection=unknown_detection))


def load_bundle(path: str | Path, *, threads: int | None = None) -> Bundle:
    """A bundle folder or zip, checked (format version, checksums) before use."""
    return Bundle.from_files(read_files(Path(path)), threads=threads)
