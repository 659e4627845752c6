"""The gateway: REST API, WebSocket feeds and dashboard, served by Hypercorn on trio.

It reaches services only through the instance handle's messages: routes translate between
HTTP and those messages, nothing more.
"""
