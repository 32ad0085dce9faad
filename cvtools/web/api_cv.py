"""/cv: the original's REST call, `GET /cv?<path or URL>[:n]` and `POST /cv` with an image body."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..errors import BadInput
from .deps import WITH_MODEL, get_services

router = APIRouter(tags=["analysis"])
# [[group, probability], ...]: pairs written without prefixItems, which some OpenAPI tools misread
CV_LIST: dict[int | str, dict[str, Any]] = {
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
    **WITH_MODEL,
}
CV_BODY = {
    "requestBody": {
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
            },
        }
    }
}
_SUFFIX = re.compile(r"^(?P<target>.+):(?P<n>[^:/\\]*)$")


def parse_cv_query(raw: str) -> tuple[str, int | None]:
    """'<path or URL>[:n]' -> (target, n); n = 0 or none: every group, as the original answered.
    Ports, drive letters and colons inside paths are kept."""
    text = unquote(raw)
    if not text:
        raise BadInput("give an image path or URL: /cv?<path or URL>[:n]")
    m = _SUFFIX.match(text)
    if not m:
        return text, None
    suffix = m["n"]
    if suffix.isdigit() and not re.match(r"^https?://[^/]*$", m["target"]):
        n = int(suffix)
        return m["target"], n or None
    if re.fullmatch(r"[+-]?\d+(\.\d*)?|", suffix) or (suffix and not re.search(r"[.\s]", suffix) and len(suffix) <= 12):
        raise BadInput(f"the part after the last ':' ({suffix!r}) must be a whole number (0: every group)")
    return text, None  # a colon inside a file name, e.g. /data/a:b.jpg


@router.get("/cv", responses=CV_LIST, response_class=JSONResponse)
def cv_get(request: Request) -> JSONResponse:
    """`/cv?<local path or http(s) URL>[:n]` -> `[[group, probability], ...]`, highest first."""
    sv = get_services(request)
    target, n = parse_cv_query(request.scope.get("query_string", b"").decode("latin-1"))
    # The request is judged before the model: a forbidden path is 403 whether a model exists or not.
    source = sv.classifier.locate(target)
    sv.models.require_production()
    return JSONResponse(sv.classifier.cv(source.read(sv.classifier.policy), n))


@router.post("/cv", responses=CV_LIST, response_class=JSONResponse, openapi_extra=CV_BODY)
async def cv_post(request: Request, n: Annotated[int | None, Query(ge=0, le=100000)] = None) -> JSONResponse:
    """An image body (raw bytes, or multipart field `file`) -> the same list as `GET /cv`."""
    sv = get_services(request)
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
    return JSONResponse(await run_in_threadpool(sv.classifier.cv, data, n))
