"""Status, Groups and Images endpoints of API.md: validate, call one function, map errors."""

from __future__ import annotations

import shutil
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel

from ..dataset import Incoming
from ..errors import BadInput
from .app import AppContext, get_ctx

router = APIRouter(tags=["dataset"])
Ctx = Annotated[AppContext, Depends(get_ctx)]

MEDIA = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
}


class Problem(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": Problem} for code in (400, 403, 404, 409, 413, 415, 422)}


class NewGroup(BaseModel):
    name: str
    parent: str | None = None


class ChangeGroup(BaseModel):
    name: str | None = None
    exclusive: bool | None = None


class LabelMode(BaseModel):
    label_mode: str


class StatusChange(BaseModel):
    ids: list[str]
    status: str


class MoveRequest(BaseModel):
    ids: list[str]
    group: str


@router.get("/api/status")
def status(ctx: Ctx) -> dict[str, Any]:
    return {
        "model": ctx.engine.status(),
        "dataset": {
            "dir": str(ctx.settings.dataset_dir),
            "groups": len(ctx.dataset.group_names()),
            "images": ctx.dataset.totals(),
        },
        "jobs": [j.to_json() for j in ctx.jobs.recent()],
    }


@router.get("/api/groups")
def list_groups(ctx: Ctx) -> dict[str, Any]:
    return {"groups": ctx.dataset.list_groups()}


@router.post("/api/groups", status_code=201, responses=ERRORS)
def create_group(body: NewGroup, ctx: Ctx) -> dict[str, str]:
    return {"name": ctx.dataset.create_group(body.name, body.parent or None)}


@router.patch("/api/groups/{group:path}", responses=ERRORS)
def change_group(group: str, body: ChangeGroup, ctx: Ctx) -> dict[str, Any]:
    """Rename (`name`: the new leaf name) and/or mark a top-level group `exclusive`."""
    if body.name is None and body.exclusive is None:
        raise BadInput("give a new name, exclusive, or both")
    if body.exclusive is not None:
        ctx.dataset.set_exclusive(group, body.exclusive)
    name = ctx.dataset.rename_group(group, body.name) if body.name is not None else ctx.dataset.require_group(group)
    if body.exclusive is None:
        return {"name": name}  # a rename answers as API.md says
    return {"name": name, "exclusive": name in ctx.dataset.exclusive_roots()}


@router.get("/api/dataset/mode")
def get_label_mode(ctx: Ctx) -> dict[str, Any]:
    return {"label_mode": ctx.dataset.label_mode, "multi_members": ctx.dataset.multi_members()}


@router.put("/api/dataset/mode", responses=ERRORS)
def put_label_mode(body: LabelMode, ctx: Ctx) -> dict[str, Any]:
    """single <-> multi; back to single is refused (409) while an image is in several groups."""
    return {"label_mode": ctx.dataset.set_label_mode(body.label_mode), "multi_members": ctx.dataset.multi_members()}


@router.delete("/api/groups/{group:path}", responses=ERRORS)
def delete_group(group: str, ctx: Ctx) -> dict[str, Any]:
    group = ctx.dataset.require_group(group)
    return {"deleted": group, "images": ctx.dataset.delete_group(group)}


@router.get("/api/groups/{group:path}/images", responses=ERRORS)
def list_images(
    group: str,
    ctx: Ctx,
    status: str = "group",
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    total, images = ctx.dataset.list_images(group, status, offset, limit)
    return {"total": total, "images": images}


@router.post("/api/groups/{group:path}/images", responses=ERRORS)
def upload_images(
    group: str,
    ctx: Ctx,
    files: Annotated[list[UploadFile], File(description="one or many image files")],
    status: Annotated[str, Form()] = "group",
) -> dict[str, Any]:
    ctx.dataset.require_group(group)
    if status not in ("group", "new", "deleted"):
        raise BadInput("status must be one of group, new, deleted")
    items = []
    try:
        for f in files:
            tmp = ctx.dataset.new_tmp_path()
            items.append(Incoming(name=f.filename or "image", path=tmp))  # cleaned up if the write fails
            with open(tmp, "wb") as out:
                shutil.copyfileobj(f.file, out, 1 << 20)
    except BaseException:
        for item in items:
            item.path.unlink(missing_ok=True)
        raise
    result = ctx.dataset.add_images(group, items, status=status)
    if len(result.added) > THUMBS_IN_BACKGROUND:
        ids = [a["id"] for a in result.added]
        ctx.jobs.submit("thumbs", lambda job: _build_thumbs(ctx, ids, job), message="Making thumbnails")
    return {"added": result.added, "skipped": result.skipped}


THUMBS_IN_BACKGROUND = 20  # a larger import gets its thumbnails made by a job, not by the first page view


def _build_thumbs(ctx: AppContext, ids: list[str], job: Any) -> dict[str, int]:
    made = 0
    for n, image_id in enumerate(ids):
        job.check()
        try:
            ctx.dataset.thumb_path(image_id)
            made += 1
        except Exception:  # moved or deleted meanwhile, or unreadable: the page shows it on demand
            pass
        job.progress(n + 1, len(ids), f"Thumbnails: {n + 1} of {len(ids)}")
    return {"thumbnails": made}


@router.post("/api/images/status", responses=ERRORS)
def set_status(body: StatusChange, ctx: Ctx) -> dict[str, int]:
    return {"updated": ctx.dataset.set_status(body.ids, body.status)}


@router.post("/api/images/move", responses=ERRORS)
def move_images(body: MoveRequest, ctx: Ctx) -> dict[str, int]:
    return {"moved": ctx.dataset.move(body.ids, body.group)}


@router.post("/api/images/add", responses=ERRORS)
def add_to_group(body: MoveRequest, ctx: Ctx) -> dict[str, int]:
    """Multi-label mode: the images become Group members of one more group (409 in single mode)."""
    return {"added": ctx.dataset.add_to_group(body.ids, body.group)}


@router.get("/api/images/{image_id}", responses=ERRORS)
def get_image(image_id: str, ctx: Ctx) -> dict[str, Any]:
    return ctx.dataset.get_image(image_id)


@router.get("/api/images/{image_id}/file", responses=ERRORS, response_class=FileResponse)
def image_file(image_id: str, ctx: Ctx) -> FileResponse:
    path = ctx.dataset.file_path(image_id)
    return FileResponse(
        path,
        media_type=MEDIA.get(path.suffix.lower(), "application/octet-stream"),
        headers={"Cache-Control": "private, max-age=3600"},
    )


@router.get("/api/images/{image_id}/thumb", responses=ERRORS, response_class=FileResponse)
def image_thumb(image_id: str, ctx: Ctx) -> FileResponse:
    return FileResponse(
        ctx.dataset.thumb_path(image_id),
        media_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=86400, immutable"},
    )


class GrabRequest(BaseModel):
    query: str
    count: int = 100
    provider: str | None = None


@router.post("/api/groups/{group:path}/grab", status_code=202, responses=ERRORS)
def grab(group: str, body: GrabRequest, ctx: Ctx) -> JSONResponse:
    """Extend images: search the web for `query` and download up to `count` images as New."""
    from ..grabber.grab import Grabber, chain

    group = ctx.dataset.require_group(group)
    query = body.query.strip()
    if not query or len(query) > 300:
        raise BadInput("query must be 1 to 300 characters")
    if not 1 <= body.count <= 100:
        raise BadInput("count must be between 1 and 100")
    chain(ctx.settings, body.provider)  # 400 for an unknown provider, before the job starts
    grabber = Grabber(ctx.dataset, ctx.settings)
    job = ctx.jobs.submit(
        "grab",
        lambda job: grabber.run(group, query, body.count, body.provider, job),
        message=f"Searching for {query!r}",
    )
    return JSONResponse({"job": job.id}, status_code=202)


@router.get("/api/grab/providers")
def grab_providers(ctx: Ctx) -> dict[str, Any]:
    from ..grabber.grab import providers

    return {"providers": ["auto", *providers(ctx.settings)], "default": "auto"}
