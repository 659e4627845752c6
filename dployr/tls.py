"""How dployr's clients (the CLI, the agent) verify a control plane's TLS certificate.

Three ways, from the most to the least usual:

* the system's CAs (a certificate from a public CA), the address checked against it;
* a CA file (``--ca FILE``): a private CA, or the control plane's own certificate, which
  then is the one trusted (a pin), the address still checked against it;
* the local daemon's own certificate (the file ``dployr up --tls-cert`` serves, named in
  its ``daemon.json``): exactly that certificate is trusted, whatever address the daemon
  listens on (``0.0.0.0`` is in no certificate).
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import trio

from dployr.errors import DployrError

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


async def handshake(url: str, context: ssl.SSLContext) -> None:
    """Open a TLS connection to ``url``'s host and close it: the certificate is verified.

    Dialled before a ``wss://`` WebSocket: trio-websocket takes a TLS failure as a closed
    connection and waits out its whole connect timeout for an opening handshake that
    cannot come, with no reason; this says it at once, in OpenSSL's words. Raises
    ``OSError`` (``ssl.SSLError`` as its cause for a refused certificate); the caller
    bounds its time.
    """
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    stream = await trio.open_ssl_over_tcp_stream(
        host, parts.port or 443, ssl_context=context, https_compatible=True
    )
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as error:
        raise ConnectionError(f"TLS with {host} failed") from error.__cause__
    finally:
        await trio.aclose_forcefully(stream)


def _why(error: OSError) -> str:
    if isinstance(error, ssl.SSLError):
        return " ".join(str(error.reason or error).split())
    return error.strerror or str(error)
