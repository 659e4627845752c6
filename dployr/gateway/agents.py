"""The door agents dial: ``POST /api/v1/agent/join`` and the ``/api/v1/agent`` WebSocket.

Both stand apart from the user API. The join takes no API token: the join token in its
body is what authenticates it (single use, expiring); it answers the instance's name and
its credential. The WebSocket takes an agent credential as its bearer token, nothing
else: an API token is refused there (it is no credential), and a credential is refused
on every user route (it is no API token: credentials are not in the tokens table). The
door only translates between HTTP and the control plane's :class:`AgentDoor`; the hub
serves the accepted channel (dployr/cluster/hub.py, docs/agent-protocol.md).
"""

from __future__ import annotations

import logging
from typing import Any, Final

from quart import Response, request, websocket
from quart_trio import QuartTrio

from dployr.gateway.responses import bearer_token, error_response, json_response
from dployr.protocol.errors import Error
from dployr.protocol.wire import AgentDoor

log = logging.getLogger("dployr.gateway")

JOIN_PATH: Final = "/api/v1/agent/join"
CHANNEL_PATH: Final = "/api/v1/agent"
OPEN_PATHS: Final = frozenset({JOIN_PATH, CHANNEL_PATH})
"""The paths the API tokens' check leaves to this door."""


class _Channel:
    """The accepted WebSocket as the hub's :class:`~dployr.protocol.wire.AgentChannel`."""

    async def send(self, text: str) -> None:
        await websocket.send(text)

    async def receive(self) -> str | bytes:
        message: str | bytes = await websocket.receive()
        return message

    async def close(self, code: int, reason: str) -> None:
        await websocket.close(code, reason[:120])


def register(app: QuartTrio, door: AgentDoor) -> None:
    """Add the agents' door to the app."""

    @app.post(JOIN_PATH)
    async def join() -> Response:
        body: Any = await request.get_json(force=True, silent=True)
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not 0 < len(token) <= 200:
            return error_response(400, "bad_request", 'the body must be {"token": JOIN_TOKEN}')
        address = request.remote_addr or "?"
        try:
            name, credential = await door.join(token, address)
        except Error as error:
            return error_response(
                401, "unauthorized", f"the join token was refused: {error.message}"
            )
        return json_response({"instance": name, "credential": credential})

    @app.websocket(CHANNEL_PATH)
    async def channel() -> Response | None:
        credential = bearer_token(websocket.headers)
        if credential is None:
            return error_response(
                401, "unauthorized", "missing agent credential: send Authorization: Bearer"
            )
        if await door.admit(credential) is None:
            return error_response(401, "unauthorized", "unknown or revoked agent credential")
        await websocket.accept()
        await door.serve(credential, _Channel(), websocket.remote_addr or "?")
        return None
