"""/cv (the original's REST format), /api/analyze and the similarity index endpoints."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from .. import imaging, netfetch
from ..errors import BadInput, NotAnImage, TooLarge
from .api_dataset import ERRORS
from .app import AppContext, get_ctx

router = APIRouter(tags=["analysis"])
Ctx = Annotated[AppContext, Depends(get_ctx)]
CV_RESPONSES: dict[int | str, dict[str, Any]] = {**ERRORS, 503: ERRORS[400]}
# [[group, probability], ...]: pairs written without prefixItems, which some OpenAPI tools misread
CV_LIST = {
    200: {
        "description": "[[group, probability], ...] highest first",
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "number"}]},
                        "minItems": 2,
                        "maxItems": 2,
                    },
                }
            }
        },
    },
    **CV_RESPONSES,
}
_SUFFIX = re.compile(r"^(?P<target>.+):(?P<n>[^:/\\]*)$")


def parse_cv_query(raw: str) -> tuple[str, int | None]:
    """'<path or URL>[:n]' -> (target, n). Ports, drive letters and colons inside paths are kept."""
    text = unquote(raw)
    if not text:
        raise BadInput("give an image path or URL: /cv?<path or URL>[:n]")
    m = _SUFFIX.match(text)
    if not m:
        return text, None
    suffix = m["n"]
    if suffix.isdigit() and not re.match(r"^https?://[^/]*$", m["target"]):
        n = int(suffix)
        if n < 1:
            raise BadInput("the number after the last ':' must be a positive whole number")
        return m["target"], n
    if re.fullmatch(r"[+-]?\d+(\.\d*)?|", suffix) or (suffix and not re.search(r"[.\s]", suffix) and len(suffix) <= 12):
        raise BadInput(f"the part after the last ':' ({suffix!r}) must be a positive whole number")
    return text, None  # a colon inside a file name, e.g. /data/a:b.jpg


def _policy(ctx: AppContext) -> netfetch.UrlPolicy:
    return netfetch.UrlPolicy(allow_private=ctx.settings.allow_private_urls, max_bytes=ctx.settings.max_upload_bytes)


def _decode(ctx: AppContext, data: bytes) -> Any:
    try:
        return imaging.load_rgb(data, max_pixels=ctx.settings.max_image_pixels, min_side=ctx.engine.decode_side())
    except imaging.ImageRejected as exc:
        raise (TooLarge if exc.too_large else NotAnImage)(str(exc)) from None


def _classify_bytes(ctx: AppContext, data: bytes, n: int | None) -> list[list[Any]]:
    ctx.engine.require_production()
    image = _decode(ctx, data)
    if ctx.settings.cv_unknown:
        ranked, _, verdict = ctx.engine.analyze_full(image)
    else:  # the original format: no open-set search on this hot path
        (ranked, _), verdict = ctx.engine.analyze(image), {}
    out = [[g, p] for g, p in (ranked[:n] if n else ranked)]
    if verdict.get("score") is not None:
        out.insert(0, ["unknown", verdict["score"]])  # opt-in: a score above 1 means unknown
    return out


@router.get("/cv", responses=CV_LIST, response_class=JSONResponse)
def cv_get(request: Request) -> JSONResponse:
    """`/cv?<local path or http(s) URL>[:n]` -> `[[group, probability], ...]`, highest first."""
    ctx = get_ctx(request)
    target, n = parse_cv_query(request.scope.get("query_string", b"").decode("latin-1"))
    # The request is judged before the model: a forbidden path is 403 whether a model exists or not.
    source = netfetch.locate(
        target, public_dirs=list(ctx.settings.public_dirs), base=ctx.settings.dataset_dir, policy=_policy(ctx)
    )
    ctx.engine.require_production()
    return JSONResponse(_classify_bytes(ctx, source.read(_policy(ctx)), n))


@router.post(
    "/cv",
    responses=CV_LIST,
    response_class=JSONResponse,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
                },
            }
        }
    },
)
async def cv_post(request: Request, n: Annotated[int | None, Query(ge=1, le=100000)] = None) -> JSONResponse:
    """An image body (raw bytes, or multipart field `file`) -> the same list as `GET /cv`."""
    ctx = get_ctx(request)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise BadInput("send the image as the multipart field 'file' or as the raw body")
        data = await upload.read()
    else:
        data = await request.body()
    if not data:
        raise BadInput("the request has no image")
    return JSONResponse(await run_in_threadpool(_classify_bytes, ctx, data, n))


@router.post("/api/analyze", responses=CV_RESPONSES)
def analyze(
    ctx: Ctx,
    file: Annotated[UploadFile | None, File()] = None,
    url: Annotated[str | None, Form(description="an image URL or local path instead of a file")] = None,
    similar: Annotated[int, Form(ge=0, le=1000)] = 20,
    group: Annotated[str | None, Form()] = None,
) -> dict[str, Any]:
    engine = ctx.engine
    if file is not None:
        engine.require_production()
        data = file.file.read(ctx.settings.max_upload_bytes + 1)
    elif url:
        source = netfetch.locate(
            url.strip(), public_dirs=list(ctx.settings.public_dirs), base=ctx.settings.dataset_dir, policy=_policy(ctx)
        )
        engine.require_production()
        data = source.read(_policy(ctx))
    else:
        raise BadInput("send an image file (field 'file') or an image URL (field 'url')")
    if group:
        group = ctx.dataset.require_group(group)
    ranked, vector, verdict = engine.analyze_full(_decode(ctx, data))
    hits = engine.similar(vector, similar, group) if similar else []
    out: list[dict[str, Any]] = []
    for image_id, grp, dist in hits or []:
        try:
            img = ctx.dataset.get_image(image_id)
        except Exception:  # removed since the index was updated
            continue
        out.append(
            {
                "id": image_id,
                "group": grp,
                "distance": round(dist, 6),
                "thumb": img["thumb"],
                "path": img["path"],
                "url": img["url"],
                "filename": img["filename"],
            }
        )
    return {
        "classification": [[g, p] for g, p in ranked],
        "similar": out,
        "index": hits is not None,
        "unknown": verdict["unknown"],
        "reason": verdict["reason"],
        "fallback": verdict["fallback"],
        "nearest": verdict["nearest"],
        "score": verdict["score"],
        "labels": verdict.get("labels"),
    }


class ClassifyRequest(BaseModel):
    paths: list[str]


MAX_BATCH = 256


@router.post(
    "/api/classify",
    responses=CV_RESPONSES,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {"paths": {"type": "array", "items": {"type": "string"}}},
                    }
                },
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    }
                },
            }
        }
    },
)
async def classify(request: Request) -> JSONResponse:
    """Many images at once (multipart `files`, or JSON `{"paths": [local paths or URLs]}`): for each,
    the ranked groups, `unknown` with its reason, the `fallback` parent, and the nearest dataset image."""
    ctx = get_ctx(request)
    ctx.engine.require_production()
    items: list[tuple[str, bytes | str]] = []
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=MAX_BATCH)
        for f in form.getlist("files"):
            if not isinstance(f, str):
                items.append((f.filename or "image", await f.read()))
    else:
        try:
            body = ClassifyRequest.model_validate_json(await request.body())
        except ValueError:
            raise BadInput('send multipart "files", or JSON {"paths": ["<path or URL>", ...]}') from None
        items = [(p, p) for p in body.paths]
    if not items:
        raise BadInput("no images given")
    if len(items) > MAX_BATCH:
        raise TooLarge(f"at most {MAX_BATCH} images per request")
    return JSONResponse({"results": await run_in_threadpool(_classify_many, ctx, items)})


def _classify_many(ctx: AppContext, items: list[tuple[str, bytes | str]]) -> list[dict[str, Any]]:
    from concurrent.futures import ThreadPoolExecutor

    from ..errors import CVError

    def one(item: tuple[str, bytes | str]) -> dict[str, Any]:
        name, src = item
        try:
            data = (
                src
                if isinstance(src, bytes)
                else netfetch.read_image_source(
                    src, public_dirs=list(ctx.settings.public_dirs), base=ctx.settings.dataset_dir, policy=_policy(ctx)
                )
            )
            ranked, _, verdict = ctx.engine.analyze_full(_decode(ctx, data))
        except CVError as exc:
            return {"name": name, "error": exc.detail, "status": exc.status}
        except OSError as exc:  # one unreadable item does not fail the others
            return {"name": name, "error": f"unreadable ({exc.strerror or type(exc).__name__})", "status": 400}
        return {"name": name, "classification": [[g, p] for g, p in ranked], **verdict}

    # Threads decode in parallel and their requests meet in the engine's batcher.
    with ThreadPoolExecutor(max(2, ctx.settings.batch_size)) as pool:
        return list(pool.map(one, items))


@router.get("/api/index")
def index_status(ctx: Ctx) -> dict[str, Any]:
    return ctx.engine.index_status()


@router.post("/api/index", status_code=202, responses=CV_RESPONSES)
def build_index(ctx: Ctx) -> JSONResponse:
    return JSONResponse({"job": ctx.engine.start_index_job(full=True).id}, status_code=202)


@router.get("/api/anomalies", responses=CV_RESPONSES)
def anomalies(
    ctx: Ctx,
    type: Annotated[str, Query(description="errors or duplicates")] = "errors",
    method: Annotated[str | None, Query(description="cross_validation or production")] = None,
) -> dict[str, Any]:
    """The latest anomaly list; computed now when the dataset or the main model changed since."""
    return ctx.engine.anomalies(type, method)


@router.post("/api/anomalies", status_code=202, responses=CV_RESPONSES)
def calculate_anomalies(
    ctx: Ctx,
    type: Annotated[str, Query()] = "errors",
    method: Annotated[str | None, Query()] = None,
) -> JSONResponse:
    """Calculate as a background job with progress; then GET returns the list."""
    return JSONResponse({"job": ctx.engine.start_anomaly_job(type, method).id}, status_code=202)
