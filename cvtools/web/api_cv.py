"""/cv: the original's REST call, `GET /cv?<path or URL>[:n]` and `POST /cv` with an image body."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..cvquery import parse_cv_query
from .cv_body import read_cv_body
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
    data = await read_cv_body(request)
    return JSONResponse(await run_in_threadpool(sv.classifier.cv, data, n))
