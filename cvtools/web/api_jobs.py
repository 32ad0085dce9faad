"""Jobs and the server-sent event stream."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from .api_dataset import ERRORS
from .app import AppContext, get_ctx

router = APIRouter(tags=["jobs"])
Ctx = Annotated[AppContext, Depends(get_ctx)]


@router.get("/api/jobs")
def list_jobs(ctx: Ctx) -> dict[str, Any]:
    return {"jobs": [j.to_json() for j in ctx.jobs.recent(50)]}


@router.get("/api/jobs/{job_id}", responses=ERRORS)
def get_job(job_id: str, ctx: Ctx) -> dict[str, Any]:
    return ctx.jobs.get(job_id).to_json()


@router.post("/api/jobs/{job_id}/cancel", responses=ERRORS)
def cancel_job(job_id: str, ctx: Ctx) -> dict[str, Any]:
    return ctx.jobs.cancel(job_id).to_json()


@router.get("/api/events", response_class=StreamingResponse)
async def events(request: Request) -> StreamingResponse:
    hub = get_ctx(request).events
    return StreamingResponse(
        hub.stream(request.is_disconnected),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
