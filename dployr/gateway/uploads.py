"""``POST /api/v1/uploads``: a folder packed by the CLI, streamed to the control plane.

The body is a ``.tar.gz`` (``dployr deploy --remote .`` packs it: dployr/archive.py),
read as it arrives and spooled to disk by :class:`~dployr.cluster.uploads.Uploads`, never
held whole in memory. One larger than the limit (``dployr up --max-upload``) is refused
with ``413`` as soon as its declared length, or the bytes read, pass it; one that is not
an archive safe to unpack with ``400``; nothing of either is kept. The answer (``201``)
names the upload: ``{"upload": ID, "size": N, "source": "upload:ID"}``; a deploy whose
source is ``upload:ID`` builds it, on whichever instance runs the service. The request
needs a token that may deploy.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any, Final, Protocol

from quart import Response, request
from quart_trio import QuartTrio
from quart_trio.wrappers.request import TrioRequest
from werkzeug.exceptions import RequestEntityTooLarge

from dployr.archive import TooLarge, UploadView
from dployr.gateway.responses import error_response, json_response
from dployr.protocol.errors import Error

UPLOADS_PATH: Final = "/api/v1/uploads"

_ERROR: Final = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
SCHEMAS: Final[dict[str, Any]] = {
    "Upload": {
        "type": "object",
        "properties": {
            "upload": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "size": {"type": "integer", "description": "bytes received"},
            "source": {
                "type": "string",
                "description": "what a deploy's remote url names it by: upload:ID",
            },
        },
        "required": ["upload", "size", "source"],
    }
}
OPERATION: Final[dict[str, Any]] = {
    "summary": "Upload a folder packed as a .tar.gz, for a deploy to name (upload:ID)",
    "operationId": "upload",
    "requestBody": {
        "required": True,
        "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
    },
    "responses": {
        "201": {
            "description": "kept until a deploy uses it (an hour at most)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Upload"}}},
        },
        "400": {"description": "not a .tar.gz archive safe to unpack", "content": _ERROR},
        "401": {"description": "missing or invalid API token", "content": _ERROR},
        "403": {"description": "the token may not deploy", "content": _ERROR},
        "413": {"description": "larger than dployr up --max-upload", "content": _ERROR},
    },
}
"""The route in the OpenAPI document (dployr/gateway/openapi.py)."""


class UploadStore(Protocol):
    """Where uploads are kept (:class:`dployr.cluster.uploads.Uploads`)."""

    @property
    def max_size(self) -> int:
        """The largest upload taken, in bytes."""
        ...

    async def receive(self, body: AsyncIterable[bytes], declared: int | None) -> UploadView:
        """Spool a body as a new upload; TooLarge past the limit, an Error if unsafe."""
        ...


def register(app: QuartTrio, uploads: UploadStore) -> None:
    """Add the uploads' route to the app."""

    class UploadRequest(TrioRequest):
        """Quart's request, with the upload limit instead of the API's small body limit
        on the uploads' route (which reads the body as it streams)."""

        def __init__(self, method: str, scheme: str, path: str, *args: Any, **kw: Any) -> None:
            if path == UPLOADS_PATH and method == "POST":
                kw["max_content_length"] = uploads.max_size
            super().__init__(method, scheme, path, *args, **kw)

    app.request_class = UploadRequest

    @app.post(UPLOADS_PATH)
    async def upload() -> Response:
        try:
            received = await uploads.receive(request.body, request.content_length)
        except TooLarge as error:
            return error_response(413, "too_large", error.message)
        except RequestEntityTooLarge:  # more buffered than the limit, before it was read
            return error_response(413, "too_large", TooLarge(uploads.max_size).message)
        except Error as error:
            return error_response(400, "bad_request", error.message)
        return json_response(
            {"upload": received.upload, "size": received.size, "source": received.source}, 201
        )
