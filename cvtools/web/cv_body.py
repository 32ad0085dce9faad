"""The image of a `POST /cv`: the raw body or the multipart field `file` (the app and the bundle's server)."""

from __future__ import annotations

from starlette.requests import Request

from ..errors import BadInput


async def read_cv_body(request: Request) -> bytes:
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
    return data
