"""The web dashboard: server-rendered pages from ``web/``, signed in with an API token."""

from __future__ import annotations

from quart_trio import QuartTrio

from dployr.engine.instance import InstanceHandle
from dployr.gateway.responses import TokenCheck


def register(app: QuartTrio, handle: InstanceHandle, check_token: TokenCheck) -> None:
    """Add the dashboard's pages and its session check to the app.

    A request the dashboard authenticates (a valid session cookie, and a CSRF token on
    anything that changes state) sets ``g.authenticated``, which the API's bearer-token
    check then accepts.
    """
