"""How dployr's clients (the CLI, the agent) verify a control plane's TLS certificate,
and open a ``wss://`` WebSocket over one connection whose certificate was verified first.

Three ways, from the most to the least usual:

* the system's CAs (a certificate from a public CA), the address checked against it;
* a CA file (``--ca FILE``): a private CA, or the control plane's own certificate, which
  then is the one trusted (a pin), the address still checked against it;
* the local daemon's own certificate (the file ``dployr up --tls-cert`` serves, named in
  its ``daemon.json``): exactly that certificate is trusted, whatever address the daemon
  listens on (``0.0.0.0`` is in no certificate).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit

import trio

from dployr.errors import DployrError

if TYPE_CHECKING:
    from trio_websocket import WebSocketConnection

MESSAGE_QUEUE_SIZE = 1
"""Messages a WebSocket holds unread before its reader waits (trio-websocket's default)."""
MAX_MESSAGE_SIZE = 2**20
"""The largest message a WebSocket takes, in bytes (trio-websocket's default)."""

_BEGIN = "-----BEGIN CERTIFICATE-----"
_END = "-----END CERTIFICATE-----"


class CertificateFileError(DployrError):
    """A CA or certificate file cannot be used to verify a server."""


def client_context(ca: str | None = None) -> ssl.SSLContext:
    """Verify a server against the system's CAs, or against ``ca`` (a CA, or the server's
    own certificate: any certificate in the file is a trust anchor, not only a root)."""
    try:
        context = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as error:
        raise CertificateFileError(f"cannot use {ca} to verify the server: {_why(error)}") from None
    if ca is not None:
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def pinned_context(cert_file: str) -> ssl.SSLContext:
    """Trust exactly the first certificate of ``cert_file`` (the chain after it is not
    trusted), at any address."""
    try:
        with open(cert_file, encoding="ascii", errors="replace") as file:
            text = file.read()
    except OSError as error:
        raise CertificateFileError(f"cannot read {cert_file}: {_why(error)}") from None
    start, end = text.find(_BEGIN), text.find(_END)
    if start < 0 or end < start:
        raise CertificateFileError(f"{cert_file} holds no PEM certificate")
    try:
        context = ssl.create_default_context(cadata=text[start : end + len(_END)])
    except ssl.SSLError as error:
        raise CertificateFileError(f"cannot use {cert_file}: {_why(error)}") from None
    context.check_hostname = False  # the certificate itself is the identity, not a name
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


async def connect(url: str, context: ssl.SSLContext) -> trio.SSLStream[trio.SocketStream]:
    """A TLS connection to ``url``'s host, its handshake done: the certificate is verified.

    Raises ``OSError`` (a ``ConnectionError`` with the ``ssl.SSLError`` as its cause for a
    refused certificate); the caller bounds its time.
    """
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    tcp = await trio.open_tcp_stream(host, parts.port or 443)
    stream = trio.SSLStream(tcp, context, server_hostname=host, https_compatible=True)
    try:
        await stream.do_handshake()
    except BaseException as error:
        await trio.aclose_forcefully(stream)
        if isinstance(error, trio.BrokenResourceError):
            raise ConnectionError(f"TLS with {host} failed") from error.__cause__
        raise
    return stream


@contextlib.asynccontextmanager
async def open_websocket(
    url: str,
    context: ssl.SSLContext | None,
    *,
    extra_headers: list[tuple[bytes, bytes]],
    connect_timeout: float,
    disconnect_timeout: float,
    message_queue_size: int = MESSAGE_QUEUE_SIZE,
    max_message_size: int = MAX_MESSAGE_SIZE,
) -> AsyncIterator[WebSocketConnection]:
    """A WebSocket to ``url``, as trio-websocket's ``open_websocket_url`` opens it, with
    its errors (``ConnectionTimeout``, ``HandshakeError`` from the ``OSError``,
    ``ConnectionRejected``, ``DisconnectionTimeout``); closed at the end.

    A ``wss://`` one is one TCP connection whose TLS handshake is done here first, under
    the same ``connect_timeout``: trio-websocket alone takes a refused certificate as a
    closed connection and waits out the timeout for an opening handshake that cannot
    come, with no reason; this says it at once, in OpenSSL's words (the ``HandshakeError``'s
    cause). The verified stream then carries the WebSocket. A ``ws://`` one is
    trio-websocket's own.
    """
    # Here, not above: a quick CLI command over https verifies a certificate and opens no
    # WebSocket (trio-websocket costs some 30 ms to import).
    import trio_websocket  # noqa: PLC0415
    from trio_websocket import (  # noqa: PLC0415
        ConnectionTimeout,
        DisconnectionTimeout,
        HandshakeError,
    )

    if urlsplit(url).scheme != "wss":
        async with trio_websocket.open_websocket_url(
            url,
            extra_headers=extra_headers,
            message_queue_size=message_queue_size,
            max_message_size=max_message_size,
            connect_timeout=connect_timeout,
            disconnect_timeout=disconnect_timeout,
        ) as plain:
            yield plain
        return
    deadline = trio.current_time() + connect_timeout
    try:
        with trio.fail_at(deadline):
            stream = await connect(url, context or ssl.create_default_context())
    except trio.TooSlowError as error:
        raise ConnectionTimeout from error
    except OSError as error:
        raise HandshakeError from error
    parts = urlsplit(url)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    caller_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:  # the connection's reader runs in it
            try:
                with trio.fail_at(deadline):
                    ws = await trio_websocket.wrap_client_stream(
                        nursery,
                        stream,
                        parts.netloc.rpartition("@")[2],  # the Host header: host[:port]
                        resource,
                        extra_headers=extra_headers,
                        message_queue_size=message_queue_size,
                        max_message_size=max_message_size,
                    )
            except trio.TooSlowError as error:
                raise ConnectionTimeout from error
            try:
                yield ws
            except BaseException as error:
                caller_error = error
                raise
            finally:
                try:
                    with trio.fail_after(disconnect_timeout):
                        await ws.aclose()
                except trio.TooSlowError as error:
                    raise DisconnectionTimeout from error
    except BaseExceptionGroup as group:  # the nursery's: the error within it goes on as it is
        _reraise(_one_error(group, caller_error))
    finally:
        await trio.aclose_forcefully(stream)  # closed already, unless the opening failed


def failure(error: BaseException) -> str | None:
    """Why TLS failed under ``error`` (a refusal's own words, found down its causes: HTTP
    clients and trio wrap it in errors that say nothing themselves), or None if it was not
    TLS."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {seen.verify_message}"
        if isinstance(seen, ssl.SSLError):
            return f"TLS failed: {seen.reason or seen}"
        seen = seen.__cause__ or seen.__context__
    return None


def _one_error(
    group: BaseExceptionGroup[BaseException], preferred: BaseException | None
) -> BaseException:
    """The error a WebSocket's nursery ended with: the one that is no cancellation (the
    caller's own if both it and the connection's reader failed), else a cancellation."""
    errors = [error for error in group.exceptions if not isinstance(error, trio.Cancelled)]
    if len(errors) == 1:
        return errors[0]
    if preferred is not None and preferred in group.exceptions:
        return preferred
    return errors[0] if errors else group.exceptions[0]


def _reraise(error: BaseException) -> NoReturn:
    """Raise ``error`` as it was, without the group it came in as its context (that group
    holds it: a loop, and noise in every traceback)."""
    context = error.__context__
    try:
        raise error
    finally:
        error.__context__ = context
        del error, context


def _why(error: OSError) -> str:
    if isinstance(error, ssl.SSLError):
        return " ".join(str(error.reason or error).split())
    return error.strerror or str(error)
