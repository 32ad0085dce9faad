"""What routers get from the app: the services (made once in the lifespan) and the documented errors."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel

from ..services import Services


def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]


class Problem(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 403, 404, 409, 413, 415, 422, 507)
}
WITH_MODEL: dict[int | str, dict[str, Any]] = {**ERRORS, 503: {"model": Problem}}
