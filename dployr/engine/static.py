"""Static sites: the folder a release publishes, and the Caddy configuration that serves it.

A static site is a web service whose process is Caddy (Debian's package), started by dployr
like any release on the release's private port; so a redeploy is the usual switch (the new
release is complete and answering before the proxy sends it a request, then the old one
drains and stops) and a rollback runs the old release folder again, its configuration
included: nothing is rebuilt.

After the build, :func:`publish` picks the folder to serve (``publish_dir``, else the first
of ``dist``, ``build``, ``public``, else the working dir) and writes the configuration into
the release (``.dployr/caddy.json``, never served). Its rules, in order:

- a path with a hidden part (``/.git/config``, ``/.env``, ``/a/.b``; ``/.well-known/`` is
  allowed) and the rule files ``/_redirects`` and ``/_headers`` are answered 404;
- redirect rules: the site's ``_redirects`` file, then the settings' ones;
- with ``spa``, a path with no file is answered with ``/index.html``;
- ``Cache-Control``: a year and ``immutable`` for a fingerprinted asset
  (``app-1a2b3c4d.js``, ``main.3f2a1b9c0d.css``), ``no-cache`` for HTML; then the header
  rules of the site's ``_headers`` file and of the settings (they win);
- files, with ``.br``/``.gz`` files beside them served to clients that accept them, and
  other answers compressed on the fly;
- a missing path: the site's ``404.html`` if it has one, with status 404.

Caddy's admin endpoint is off (releases of every service run side by side), it saves no
configuration, its files (``HOME``, ``XDG_*``) are in the service's data dir, its access
log (one JSON line per request) goes to stdout and so into the service's log history, and
its own messages (errors only) to stderr. The parsers, :func:`caddy_config` and
:func:`command` are pure; :func:`choose_publish_dir`, :func:`check_caddy` and
:func:`publish` look at the disk.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dployr.engine.errors import DeployFailed
from dployr.errors import SpecError
from dployr.staticsite import HeaderRule, Redirect, StaticOptions, parse_redirect

PUBLISH_DIRS = ("dist", "build", "public")
"""The folders a static site publishes when it names none, the first that exists."""

CONFIG = ".dployr/caddy.json"
PUBLISHED = ".dployr/published"
"""Beside the configuration: the absolute path of the folder a release publishes, so that
the next release can serve the fingerprinted assets of this one (see :func:`caddy_config`)."""
"""Where the configuration is written, relative to the release's working dir."""

CADDY_MISSING = (
    "a static site is served by Caddy, which is not installed on this machine: install "
    "Debian's package caddy (apt-get install caddy)"
)

MAX_RULE_FILE = 1 << 20

_HEX = r"[0-9a-f]{8,}"
# A bundler's short hash (Vite: 8 characters of base64url) counts when it holds a digit,
# so that a plain word (``-settings.js``) is never cached for a year.
_SHORT = "|".join(f"[A-Za-z_-]{{{i}}}[0-9][A-Za-z0-9_-]{{{7 - i}}}" for i in range(8))
FINGERPRINTED = rf"(?:[.-]{_HEX}|-(?:{_SHORT}))(?:\.[A-Za-z0-9]+)+$"
"""A file name with a content hash (RE2 and Python alike): cached for a year."""

LONG_CACHE = "public, max-age=31536000, immutable"


class StaticError(SpecError):
    """A static site's folder or rule files that cannot be published."""


def choose_publish_dir(cwd: Path, requested: str | None) -> str:
    """The folder to publish, relative to ``cwd``: ``requested``, or the first that exists.

    A folder that leads outside the release (a symbolic link) is refused.
    """
    if requested is not None:
        if not (cwd / requested).is_dir():
            raise StaticError(f"publish-dir {requested!r} is not a folder of the release")
        chosen = requested
    else:
        chosen = next((name for name in PUBLISH_DIRS if (cwd / name).is_dir()), ".")
    real, base = (cwd / chosen).resolve(), cwd.resolve()
    if real != base and base not in real.parents:
        raise StaticError(f"publish-dir {chosen!r} leads outside the release")
    return chosen


def parse_redirects(text: str) -> tuple[Redirect, ...]:
    """The rules of a ``_redirects`` file: ``FROM TO [STATUS]`` a line, ``#`` comments.

    ``STATUS`` defaults to 301; a trailing ``!`` (force) is accepted, every rule is forced.
    """
    rules = []
    for number, line in enumerate(text.splitlines(), 1):
        rule = line.split("#", 1)[0]
        if not rule.strip():
            continue
        try:
            rules.append(parse_redirect(rule))
        except SpecError as error:
            raise StaticError(f"_redirects line {number}: {error}") from None
    return tuple(rules)


def parse_headers(text: str) -> tuple[HeaderRule, ...]:
    """The rules of a ``_headers`` file: a path, then its ``Name: value`` lines indented."""
    rules: list[HeaderRule] = []
    path: str | None = None
    values: dict[str, str] = {}
    start = 0

    def close() -> None:
        if path is not None:
            try:
                rules.append(HeaderRule(path, values))
            except SpecError as error:
                raise StaticError(f"_headers line {start}: {error}") from None

    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            close()
            path, values, start = line.strip(), {}, number
            continue
        name, colon, value = line.strip().partition(":")
        if path is None or not colon:
            raise StaticError(f"_headers line {number}: expected a path, then Name: value lines")
        values[name.strip()] = value.strip()
    close()
    return tuple(rules)


def caddy_config(
    publish_dir: str,
    *,
    spa: bool = False,
    not_found_page: bool = False,
    redirects: Iterable[Redirect] = (),
    headers: Iterable[HeaderRule] = (),
    previous: str | None = None,
) -> dict[str, Any]:
    """Caddy's JSON configuration serving ``publish_dir`` (relative to its working dir).

    ``previous`` is the folder the release before this one published: a fingerprinted asset
    this release lacks is served from it, so that a page loaded just before the switch still
    gets its own assets afterwards, whatever connection asks for them (those never change
    under their name). Nothing else of the previous release is served.
    """
    error_404 = [{"handler": "error", "status_code": 404}]
    routes: list[dict[str, Any]] = [
        {
            "match": [{"path": ["*/.*"], "not": [{"path": ["/.well-known/*"]}]}],
            "handle": error_404,
        },
        {"match": [{"path": ["/_redirects", "/_headers"]}], "handle": error_404},
    ]
    for number, rule in enumerate(redirects):
        routes.append(_redirect_route(f"r{number}", rule))
    if spa:
        routes.append(
            {
                "match": [
                    {
                        "file": {
                            "root": publish_dir,
                            "try_files": ["{http.request.uri.path}", "/index.html"],
                        }
                    }
                ],
                "handle": [{"handler": "rewrite", "uri": "{http.matchers.file.relative}"}],
            }
        )
    routes.append(_headers_route({"path_regexp": {"pattern": FINGERPRINTED}}, LONG_CACHE))
    routes.append(_headers_route({"path": ["*.html", "*/"]}, "no-cache"))
    for header in headers:
        routes.append(
            {
                "match": [{"path": [header.path]}],
                "handle": [
                    {
                        "handler": "headers",
                        "response": {"set": {k: [v] for k, v in header.values.items()}},
                    }
                ],
            }
        )
    if previous is not None:
        routes.append(
            {
                "match": [
                    {
                        "path_regexp": {"pattern": FINGERPRINTED},
                        "not": [{"file": {"root": publish_dir}}],
                        "file": {"root": previous},
                    }
                ],
                "handle": [
                    {
                        "handler": "file_server",
                        "root": previous,
                        "precompressed": {"br": {}, "gzip": {}},
                        "precompressed_order": ["br", "gzip"],
                    }
                ],
            }
        )
    routes.append(
        {
            "handle": [
                {"handler": "encode", "encodings": {"zstd": {}, "gzip": {}}},
                {
                    "handler": "file_server",
                    "root": publish_dir,
                    "precompressed": {"br": {}, "gzip": {}},
                    "precompressed_order": ["br", "gzip"],
                },
            ]
        }
    )
    errors: list[dict[str, Any]] = []
    if not_found_page:
        errors.append(
            {
                "match": [{"expression": "{http.error.status_code} == 404"}],
                "handle": [
                    {"handler": "rewrite", "uri": "/404.html"},
                    {"handler": "file_server", "root": publish_dir},
                ],
            }
        )
    errors.append(
        {
            "handle": [
                {
                    "handler": "static_response",
                    "body": "{http.error.status_code} {http.error.status_text}\n",
                }
            ]
        }
    )
    access = "http.log.access.access"
    return {
        "admin": {"disabled": True, "config": {"persist": False}},
        "logging": {
            "logs": {
                "default": {
                    "writer": {"output": "stderr"},
                    "encoder": {"format": "console"},
                    "level": "ERROR",
                    "exclude": [access],
                },
                "access": {
                    "writer": {"output": "stdout"},
                    "encoder": {
                        "format": "filter",
                        "wrap": {"format": "json"},
                        "fields": {
                            "request>headers": {"filter": "delete"},
                            "resp_headers": {"filter": "delete"},
                        },
                    },
                    "include": [access],
                },
            }
        },
        "apps": {
            "http": {
                "servers": {
                    "site": {
                        "listen": ["127.0.0.1:{env.PORT}"],
                        "routes": [{"handle": [{"handler": "subroute", "routes": routes}]}],
                        "errors": {"routes": errors},
                        "automatic_https": {"disable": True},
                        "logs": {"default_logger_name": "access"},
                    }
                }
            }
        },
    }


def _headers_route(match: dict[str, Any], cache_control: str) -> dict[str, Any]:
    return {
        "match": [match],
        "handle": [{"handler": "headers", "response": {"set": {"Cache-Control": [cache_control]}}}],
    }


def _redirect_route(name: str, rule: Redirect) -> dict[str, Any]:
    if rule.path.endswith("*"):
        prefix = rule.path.removesuffix("*")
        match: dict[str, Any] = {
            "path_regexp": {"name": name, "pattern": f"^{re.escape(prefix)}(.*)$"}
        }
        target = rule.to.replace(":splat", f"{{http.regexp.{name}.1}}")
    else:
        match, target = {"path": [rule.path]}, rule.to
    if rule.status == 200:
        handle: dict[str, Any] = {"handler": "rewrite", "uri": target}
    else:
        handle = {
            "handler": "static_response",
            "status_code": rule.status,
            "headers": {"Location": [target]},
        }
    return {"match": [match], "handle": [handle]}


def command(data_dir: Path) -> str:
    """The release's command: Caddy with the release's configuration, its files in
    ``data_dir`` (the service's)."""
    home = data_dir / ".caddy"
    env = {"HOME": home, "XDG_CONFIG_HOME": home / "config", "XDG_DATA_HOME": home / "data"}
    assigned = " ".join(f"{key}={shlex.quote(str(value))}" for key, value in env.items())
    return f"env {assigned} caddy run --config {CONFIG}"


def check_caddy(path: str | None) -> None:
    """Raise DeployFailed naming the package when no ``caddy`` is on ``path``."""
    if shutil.which("caddy", path=path) is None:
        raise DeployFailed(CADDY_MISSING)


def published(cwd: Path) -> str | None:
    """The absolute folder the release at ``cwd`` published, if it says (see PUBLISHED)."""
    try:
        return (cwd / PUBLISHED).read_text().strip() or None
    except OSError:
        return None


def publish(cwd: Path, options: StaticOptions, previous: str | None = None) -> str:
    """Write the configuration serving the release at ``cwd``; return what was published.

    ``previous``: the folder the release before it published (see :func:`caddy_config`).
    """
    try:
        chosen = choose_publish_dir(cwd, options.publish_dir)
        root = cwd / chosen
        redirects = parse_redirects(_read(root / "_redirects")) + options.redirects
        headers = parse_headers(_read(root / "_headers")) + options.headers
    except SpecError as error:
        raise DeployFailed(f"cannot publish the site: {error}") from None
    not_found = (root / "404.html").is_file()
    if previous is not None and not Path(previous).is_dir():
        previous = None  # pruned, or moved with its data dir
    config = caddy_config(
        chosen,
        spa=options.spa,
        not_found_page=not_found,
        redirects=redirects,
        headers=headers,
        previous=previous,
    )
    target = cwd / CONFIG
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(config, indent=1) + "\n")
    marker = cwd / PUBLISHED
    marker.write_text(str(root.resolve()) + "\n")
    # The release may already be its service user's (a build ran as that user): the
    # configuration is too, or its Caddy could not read it.
    owner = cwd.stat()
    for path in (target.parent, target, marker):
        os.chown(path, owner.st_uid, owner.st_gid)
    if options.publish_dir is not None:
        folder = f"{chosen}/ (publish-dir)"
    elif chosen == ".":
        folder = f"./ (none of {', '.join(PUBLISH_DIRS)} exists)"
    else:
        folder = f"{chosen}/ (the first of {', '.join(PUBLISH_DIRS)})"
    extras = [
        *(["single-page app"] if options.spa else []),
        *(["404.html"] if not_found else []),
        *([_rules(len(redirects), "redirect")] if redirects else []),
        *([_rules(len(headers), "header")] if headers else []),
    ]
    return f"publishing {folder}" + (f": {', '.join(extras)}" if extras else "")


def _rules(count: int, kind: str) -> str:
    return f"{count} {kind} rule{'' if count == 1 else 's'}"


def _read(path: Path) -> str:
    """A rule file's text, or "" when the site has none."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_RULE_FILE + 1)
    except FileNotFoundError:
        return ""
    except OSError as error:
        raise StaticError(f"cannot read {path.name}: {os.strerror(error.errno or 0)}") from None
    if len(data) > MAX_RULE_FILE:
        raise StaticError(f"{path.name} is larger than 1 MiB")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise StaticError(f"{path.name} is not UTF-8 text") from None
