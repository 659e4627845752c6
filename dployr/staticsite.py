"""The settings of a static site: which folder it publishes, and its redirect and header rules.

Plain frozen values, validated when built like every setting (see :mod:`dployr.models`).
How they are served is :mod:`dployr.engine.static`'s business. A rule's text ends up in
the file server's configuration, so what could change that configuration's meaning
(braces, which Caddy reads as placeholders such as ``{env.SECRET}``, quotes, control
characters) is refused here, with the rule named.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any

import attrs

from dployr.errors import SpecError

MAX_RULES = 1000

_PUBLISH_DIR = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")
_RULE_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,2000}")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}")
REDIRECT_CODES = (200, 301, 302, 303, 307, 308)


def _check_publish_dir(_: object, __: object, value: str | None) -> None:
    if value is None:
        return
    shown = value if isinstance(value, str) else repr(value)
    if not isinstance(value, str) or len(value) > 255:
        raise SpecError(f"publish-dir must be a folder of the release, not {shown!r}")
    if value == ".":
        return
    normal = posixpath.normpath(value)
    if not _PUBLISH_DIR.fullmatch(value) or normal != value.rstrip("/"):
        raise SpecError(
            f"publish-dir {shown!r} must be a folder inside the release: a relative path of "
            "letters, digits, '.', '_' and '-' (no '..', no hidden folder)"
        )


def _check_path(what: str, value: Any) -> None:
    if not isinstance(value, str) or not _RULE_PATH.fullmatch(value):
        raise SpecError(
            f"{what} {value!r} must be a URL path starting with '/' (no spaces, quotes or braces)"
        )


def _check_value(what: str, value: Any) -> None:
    if not isinstance(value, str) or len(value) > 4000:
        raise SpecError(f"{what} must be text of at most 4000 characters, not {value!r}")
    if any(not ch.isprintable() or ch in '{}"\\' for ch in value):
        raise SpecError(f"{what} {value!r} may not hold braces, quotes or control characters")


@attrs.frozen
class Redirect:
    """``path`` answers with a redirect to ``to`` (or, with status 200, serves ``to``).

    A ``path`` ending in ``/*`` takes every path under it, and ``:splat`` in ``to`` is
    what the ``*`` matched: ``/blog/*`` → ``/news/:splat``.
    """

    path: str
    to: str
    status: int = 301

    def __attrs_post_init__(self) -> None:
        _check_path("redirect path", self.path)
        if "*" in self.path.removesuffix("*"):
            raise SpecError(f"redirect path {self.path!r} may hold '*' only at its end")
        if self.status not in REDIRECT_CODES:
            codes = ", ".join(map(str, REDIRECT_CODES))
            raise SpecError(f"redirect status must be one of {codes}, not {self.status!r}")
        _check_value("redirect target", self.to)
        if not self.to or " " in self.to:
            raise SpecError(f"redirect target {self.to!r} must be a path or a URL, no spaces")
        local = self.to.startswith("/")
        if not local and not re.match(r"https?://", self.to):
            raise SpecError(f"redirect target {self.to!r} must start with '/' or http(s)://")
        if self.status == 200 and not local:
            raise SpecError(f"a status 200 rule serves a path of the site, not {self.to!r}")
        if ":splat" in self.to and not self.path.endswith("*"):
            raise SpecError(f"redirect {self.path!r} has no '*' for the :splat of {self.to!r}")


def parse_redirect(text: str) -> Redirect:
    """A redirect rule written as a ``_redirects`` line: ``FROM TO [STATUS]``.

    ``STATUS`` defaults to 301; a trailing ``!`` (force) is accepted, every rule is forced.
    """
    words = text.split()
    if len(words) not in (2, 3):
        raise SpecError("a rule is FROM TO [STATUS]")
    code = words[2].removesuffix("!") if len(words) == 3 else "301"
    if not code.isdigit():
        raise SpecError(f"{words[2]!r} is not a status code")
    return Redirect(words[0], words[1], int(code))


def _frozen_values(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return dict(value or {})


@attrs.frozen
class HeaderRule:
    """Response headers set on the paths ``path`` matches (``*`` matches any run)."""

    path: str
    values: Mapping[str, str] = attrs.field(converter=_frozen_values)

    def __attrs_post_init__(self) -> None:
        _check_path("header path", self.path)
        if not self.values:
            raise SpecError(f"the header rule for {self.path!r} sets no header")
        for name, value in self.values.items():
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
                raise SpecError(f"{name!r} is not a header name")
            _check_value(f"header {name}", value)


def parse_header(text: str) -> tuple[str, str, str]:
    """A header rule in one line, ``PATH Name: value``: its path, name and value (checked
    once they make a :class:`HeaderRule`)."""
    path, _, header = text.strip().partition(" ")
    name, colon, value = header.partition(":")
    if not path or not colon or not name.strip():
        raise SpecError("a header rule is PATH Name: value")
    return path, name.strip(), value.strip()


def _rules(what: str) -> Any:
    def check(_: object, __: object, value: tuple[Any, ...]) -> None:
        if len(value) > MAX_RULES:
            raise SpecError(f"a static site takes at most {MAX_RULES} {what}")

    return check


def _check_spa(_: object, __: object, value: bool) -> None:
    if not isinstance(value, bool):
        raise SpecError(f"spa must be true or false, not {value!r}")


@attrs.frozen
class StaticOptions:
    """How a static site (a service of type ``static``) is published."""

    publish_dir: str | None = attrs.field(default=None, validator=_check_publish_dir)
    """The folder served, relative to the working dir; None: the first of ``dist``,
    ``build`` and ``public`` the release has, else the working dir itself."""
    spa: bool = attrs.field(default=False, validator=_check_spa)
    """A single-page app: a path with no file is answered with ``/index.html``."""
    redirects: tuple[Redirect, ...] = attrs.field(default=(), validator=_rules("redirects"))
    """Rules applied after those of the site's ``_redirects`` file."""
    headers: tuple[HeaderRule, ...] = attrs.field(default=(), validator=_rules("header rules"))
    """Rules applied after those of the site's ``_headers`` file."""
