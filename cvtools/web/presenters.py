"""Records -> JSON: the only place that knows the URLs of images (/api/images/...)."""

from __future__ import annotations

from typing import Any

from ..schemas import DuplicatePair, ErrorItem, ImageRef


def image_url(image_id: str) -> str:
    return f"/api/images/{image_id}/file"


def thumb_url(image_id: str) -> str:
    return f"/api/images/{image_id}/thumb"


def image(ref: ImageRef, groups: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": ref.id,
        "group": ref.group,
        "status": ref.status.value,
        "path": str(ref.path),
        "url": image_url(ref.id),
        "thumb": thumb_url(ref.id),
        "sha256": ref.sha256,
        "source": ref.source,
        "width": ref.width,
        "height": ref.height,
        "filename": ref.filename,
    }
    if groups is not None:  # multi-label datasets: every group the image is a Group member of
        out["groups"] = groups
    return out


def images(refs: list[ImageRef], memberships: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    if memberships is None:
        return [image(r) for r in refs]
    return [image(r, memberships.get(r.sha256, [])) for r in refs]


def brief(ref: ImageRef) -> dict[str, Any]:
    return {
        "id": ref.id,
        "group": ref.group,
        "status": ref.status.value,
        "path": str(ref.path),
        "thumb": thumb_url(ref.id),
        "url": image_url(ref.id),
        "filename": ref.filename,
    }


def error_item(e: ErrorItem) -> dict[str, Any]:
    out = {
        "id": e.image.id,
        "path": str(e.image.path),
        "thumb": thumb_url(e.image.id),
        "url": image_url(e.image.id),
        "group": e.group,
        "probability": e.probability,
        "detected": e.detected,
        "detected_probability": e.detected_probability,
    }
    if e.kind is not None:
        out["kind"] = e.kind
    return out


def duplicate_pair(p: DuplicatePair) -> dict[str, Any]:
    return {
        "pair": p.pair,
        "distance": p.distance,
        "layers": p.layers,
        "cross_group": p.cross_group,
        "a": brief(p.a),
        "b": brief(p.b),
        **({"verdict": p.verdict} if p.verdict else {}),
    }


def anomalies(result: dict[str, Any]) -> dict[str, Any]:
    out = dict(result)
    if "items" in out:
        out["items"] = [error_item(e) for e in out["items"]]
    if "pairs" in out:
        out["pairs"] = [duplicate_pair(p) for p in out["pairs"]]
    return out


def similar(hit: tuple[str, str, float], ref: ImageRef) -> dict[str, Any]:
    image_id, group, distance = hit
    return {
        "id": image_id,
        "group": group,
        "distance": round(distance, 6),
        "thumb": thumb_url(image_id),
        "path": str(ref.path),
        "url": image_url(image_id),
        "filename": ref.filename,
    }


def predictions(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A run's check-image answers with their image URLs (the Learning page shows a cell's images)."""
    return [{**p, "thumb": thumb_url(p["id"]), "url": image_url(p["id"])} for p in items]
