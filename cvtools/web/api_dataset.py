"""Status, Groups and Images endpoints of docs/API.md: validate, call one function, present."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from .. import migrate
from ..dataset import Incoming
from ..errors import BadInput
from ..schemas import ImageStatus, LabelMode
from . import presenters
from .deps import ERRORS, ServicesDep
from .responses import (
    AddedOut,
    DeletedGroupOut,
    GroupsOut,
    ImageOut,
    ImagesPage,
    JobStarted,
    LabelModeOut,
    MovedOut,
    NameOut,
    StatusOut,
    UndoneOut,
    UpdatedOut,
    UploadOut,
)

router = APIRouter(tags=["dataset"])
# The answers keep the contract's JSON exactly; the token to undo a change travels in this header.
UNDO_HEADER = "X-CVTools-Undo"

MEDIA = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
}
THUMBS_IN_BACKGROUND = 20  # a larger import gets its thumbnails made by a job, not by the first page view


class NewGroup(BaseModel):
    name: str
    parent: str | None = None


class ChangeGroup(BaseModel):
    name: str | None = None
    exclusive: bool | None = None


class LabelModeBody(BaseModel):
    label_mode: LabelMode


def _undoable(response: Response, change: Callable[[str], int], always: bool = False) -> int:
    """Make a change under a new undo token, which goes out in the header when something changed."""
    token = secrets.token_urlsafe(12)
    n = change(token)
    if n or always:
        response.headers[UNDO_HEADER] = token
    return n


class Every(BaseModel):
    """Every image of a group's status, except some: a selection wider than the loaded tiles."""

    group: str
    status: ImageStatus
    except_ids: list[str] = Field(default=[], alias="except")


class Selection(BaseModel):
    ids: list[str] = []
    every: Every | None = None

    def resolve(self, sv: Any) -> list[str]:
        if self.every is None:
            return self.ids
        skip = set(self.every.except_ids)
        return [i for i in sv.dataset.ids_in(self.every.group, self.every.status) if i not in skip]


class StatusChange(Selection):
    status: ImageStatus


class MoveRequest(Selection):
    group: str


@router.get("/api/status", response_model=StatusOut)
def status(sv: ServicesDep) -> dict[str, Any]:
    return {
        "model": sv.models.status(),
        "dataset": {
            "dir": str(sv.settings.dataset_dir),
            "groups": len(sv.dataset.group_names()),
            "images": sv.dataset.totals(),
        },
        "jobs": [j.to_json() for j in sv.jobs.recent()],
    }


@router.get("/api/groups", response_model=GroupsOut)
def list_groups(sv: ServicesDep) -> dict[str, Any]:
    return {"groups": sv.dataset.list_groups()}


@router.post("/api/groups", status_code=201, responses=ERRORS, response_model=NameOut)
def create_group(body: NewGroup, sv: ServicesDep) -> dict[str, str]:
    return {"name": sv.dataset.create_group(body.name, body.parent or None)}


@router.patch("/api/groups/{group:path}", responses=ERRORS, response_model=NameOut, response_model_exclude_unset=True)
def change_group(group: str, body: ChangeGroup, sv: ServicesDep, response: Response) -> dict[str, Any]:
    """Rename (`name`: the new leaf name) and/or mark a top-level group `exclusive`."""
    if body.name is None and body.exclusive is None:
        raise BadInput("give a new name, exclusive, or both")
    if body.exclusive is not None:
        sv.dataset.set_exclusive(group, body.exclusive)
    token = secrets.token_urlsafe(12) if body.name is not None else None
    name = (
        sv.dataset.rename_group(group, body.name, undo=token)
        if body.name is not None
        else sv.dataset.require_group(group)
    )
    if token and name != group:
        response.headers[UNDO_HEADER] = token
    if body.exclusive is None:
        return {"name": name}  # a rename answers as the contract says
    return {"name": name, "exclusive": name in sv.dataset.exclusive_roots()}


@router.delete("/api/groups/{group:path}", responses=ERRORS, response_model=DeletedGroupOut)
def delete_group(group: str, sv: ServicesDep, response: Response) -> dict[str, Any]:
    group = sv.dataset.require_group(group)
    images = _undoable(response, lambda token: sv.dataset.delete_group(group, token), always=True)
    return {"deleted": group, "images": images}


@router.get("/api/dataset/mode", response_model=LabelModeOut)
def get_label_mode(sv: ServicesDep) -> dict[str, Any]:
    return {"label_mode": sv.dataset.label_mode.value, "multi_members": sv.dataset.multi_members()}


@router.put("/api/dataset/mode", responses=ERRORS, response_model=LabelModeOut)
def put_label_mode(body: LabelModeBody, sv: ServicesDep) -> dict[str, Any]:
    """single <-> multi; back to single is refused (409) while an image is in several groups."""
    mode = sv.dataset.set_label_mode(body.label_mode)
    return {"label_mode": mode.value, "multi_members": sv.dataset.multi_members()}


@router.get("/api/groups/{group:path}/images", responses=ERRORS, response_model=ImagesPage)
def list_images(
    group: str,
    sv: ServicesDep,
    status: ImageStatus = ImageStatus.GROUP,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    total, refs = sv.dataset.list_images(group, status, offset, limit)
    multi = sv.dataset.label_mode == LabelMode.MULTI
    return {"total": total, "images": presenters.images(refs, sv.dataset.memberships(refs) if multi else None)}


@router.post("/api/groups/{group:path}/images", responses=ERRORS, response_model=UploadOut)
def upload_images(
    group: str,
    sv: ServicesDep,
    files: Annotated[list[UploadFile], File(description="one or many image files")],
    status: Annotated[ImageStatus, Form()] = ImageStatus.GROUP,
) -> dict[str, Any]:
    sv.dataset.require_group(group)
    items = []
    try:
        for f in files:
            tmp = sv.dataset.new_tmp_path()
            items.append(Incoming(name=f.filename or "image", path=tmp))  # cleaned up if the write fails
            with open(tmp, "wb") as out:
                shutil.copyfileobj(f.file, out, 1 << 20)
    except BaseException:
        for item in items:
            item.path.unlink(missing_ok=True)
        raise
    result = sv.dataset.add_images(group, items, status=status)
    if len(result.added) > THUMBS_IN_BACKGROUND:
        ids = [r.id for r in result.added]
        sv.jobs.submit("thumbs", lambda job: _build_thumbs(sv, ids, job), message="Making thumbnails")
    return {"added": presenters.images(result.added), "skipped": result.skipped}


def _build_thumbs(sv: Any, ids: list[str], job: Any) -> dict[str, int]:
    made = 0
    for n, image_id in enumerate(ids):
        job.check()
        try:
            sv.dataset.thumb_path(image_id)
            made += 1
        except Exception:  # moved or deleted meanwhile, or unreadable: the page shows it on demand
            pass
        job.progress(n + 1, len(ids), f"Thumbnails: {n + 1} of {len(ids)}")
    return {"thumbnails": made}


@router.post("/api/import-original", responses=ERRORS, status_code=202, response_model=JobStarted)
def import_original(
    sv: ServicesDep,
    file: Annotated[UploadFile, File(description="the original CV Tools' classes.dat")],
    web_dir: Annotated[str, Form(description="the original's web folder, where it is now")] = "",
) -> dict[str, str]:
    """The original's statuses: refused (400, nothing changed) unless the file is its format; then a job."""
    classes = migrate.read_classes(file.file.read(migrate.MAX_BYTES + 1))
    folder = Path(web_dir).expanduser() if web_dir.strip() else None

    def work(job: Any) -> dict[str, Any]:
        return migrate.Importer(sv.dataset, folder).run(classes).to_json()

    return {"job": sv.jobs.submit("import", work, message="Importing the original's statuses").id}


@router.post("/api/images/status", responses=ERRORS, response_model=UpdatedOut)
def set_status(body: StatusChange, sv: ServicesDep, response: Response) -> dict[str, int]:
    return {"updated": _undoable(response, lambda token: sv.dataset.set_status(body.resolve(sv), body.status, token))}


@router.post("/api/images/move", responses=ERRORS, response_model=MovedOut)
def move_images(body: MoveRequest, sv: ServicesDep, response: Response) -> dict[str, int]:
    return {"moved": _undoable(response, lambda token: sv.dataset.move(body.resolve(sv), body.group, token))}


class UndoRequest(BaseModel):
    token: str


@router.post("/api/undo", responses=ERRORS, response_model=UndoneOut, response_model_exclude_none=True)
def undo(body: UndoRequest, sv: ServicesDep) -> dict[str, Any]:
    """Undo a change whose answer carried the undo header: 409 when it was already undone, expired, or an image
    changed since."""
    return sv.dataset.undo(body.token)


@router.post("/api/images/add", responses=ERRORS, response_model=AddedOut)
def add_to_group(body: MoveRequest, sv: ServicesDep, response: Response) -> dict[str, int]:
    """Multi-label mode: the images become Group members of one more group (409 in single mode)."""
    return {"added": _undoable(response, lambda token: sv.dataset.add_to_group(body.resolve(sv), body.group, token))}


@router.get("/api/images/{image_id}", responses=ERRORS, response_model=ImageOut)
def get_image(image_id: str, sv: ServicesDep) -> dict[str, Any]:
    return presenters.image(sv.dataset.get_image(image_id))


@router.get("/api/images/{image_id}/file", responses=ERRORS, response_class=FileResponse)
def image_file(image_id: str, sv: ServicesDep) -> FileResponse:
    path = sv.dataset.file_path(image_id)
    media = MEDIA.get(path.suffix.lower(), "application/octet-stream")
    return FileResponse(path, media_type=media, headers={"Cache-Control": "private, max-age=3600"})


@router.get("/api/images/{image_id}/thumb", responses=ERRORS, response_class=FileResponse)
def image_thumb(image_id: str, sv: ServicesDep) -> FileResponse:
    headers = {"Cache-Control": "private, max-age=86400, immutable"}
    return FileResponse(sv.dataset.thumb_path(image_id), media_type="image/jpeg", headers=headers)
