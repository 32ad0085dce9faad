"""The grabber's endpoints (Extend images)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ..errors import BadInput
from ..grabber.grab import Grabber, chain, providers
from .deps import ERRORS, ServicesDep
from .responses import JobStarted, ProvidersOut

router = APIRouter(tags=["grabber"])


class GrabRequest(BaseModel):
    query: str
    count: int = 100
    provider: str | None = None


@router.post("/api/groups/{group:path}/grab", status_code=202, responses=ERRORS, response_model=JobStarted)
def grab(group: str, body: GrabRequest, sv: ServicesDep) -> JSONResponse:
    """Extend images: search the web for `query` and download up to `count` images as New."""
    group = sv.dataset.require_group(group)
    query = body.query.strip()
    if not query or len(query) > 300:
        raise BadInput("query must be 1 to 300 characters")
    if not 1 <= body.count <= 100:
        raise BadInput("count must be between 1 and 100")
    chain(sv.settings, body.provider)  # 400 for an unknown provider, before the job starts
    grabber = Grabber(sv.dataset, sv.settings)
    job = sv.jobs.submit(
        "grab",
        lambda job: grabber.run(group, query, body.count, body.provider, job),
        message=f"Searching for {query!r}",
    )
    return JSONResponse({"job": job.id}, status_code=202)


@router.get("/api/grab/providers", response_model=ProvidersOut)
def grab_providers(sv: ServicesDep) -> dict[str, Any]:
    return {"providers": ["auto", *providers(sv.settings)], "default": "auto"}
