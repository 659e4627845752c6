"""Blueprints: a service described in one document (TOML, YAML or JSON), the deploy body.

The fields are those users of this kind of tool know::

    name = "my-api"
    description = "The public API"
    build_cmd = "pip install -r requirements.txt"
    run_cmd = "python app.py"
    port = 8080
    working_dir = "."
    health_check = "/health"

    [remote]
    url = "https://github.com/me/my-api.git"
    branch = "main"

    [env_vars]
    LOG_LEVEL = "info"

    [secrets]
    DATABASE_URL = "postgres://…"

The same shape is the body of ``POST /api/v1/services/{name}/deploy``.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from dployr import serde
from dployr.errors import SpecError
from dployr.models import DEFAULT_STOP_GRACE, ServiceSettings, Source, check_name

MAX_BLUEPRINT = 1 << 20


@attrs.frozen
class Remote:
    """Where the code is: a git URL or local path, and a branch or commit."""

    url: str
    branch: str | None = None
    commit: str | None = None


@attrs.frozen
class Blueprint:
    """A service in one document: its settings, variables and secrets."""

    run_cmd: str
    remote: Remote
    name: str | None = None
    description: str = ""
    source: str | None = None
    """Informational: "git" or "local" (dployr tells them apart by the remote itself)."""
    build_cmd: str | None = None
    port: int | None = None
    working_dir: str = "."
    health_check: str | None = None
    stop_grace: float = DEFAULT_STOP_GRACE
    env_vars: Mapping[str, str] = attrs.field(factory=dict)
    secrets: Mapping[str, str] = attrs.field(factory=dict)

    def settings(self) -> ServiceSettings:
        """The service settings this blueprint describes (validated)."""
        if self.source not in (None, "git", "local"):
            raise SpecError(f"source must be 'git' or 'local', not {self.source!r}")
        if self.name is not None:
            check_name(self.name)
        return ServiceSettings(
            source=Source(self.remote.url, self.remote.branch, self.remote.commit),
            run_cmd=self.run_cmd,
            build_cmd=self.build_cmd,
            port=self.port,
            working_dir=self.working_dir,
            description=self.description,
            health_check=self.health_check,
            stop_grace=self.stop_grace,
        )


def from_data(data: Any) -> Blueprint:
    """A blueprint from parsed data, validated, or SpecError naming the bad field."""
    if not isinstance(data, dict):
        raise SpecError("a blueprint must be a table (mapping) of fields")
    blueprint = serde.structure(data, Blueprint)
    blueprint.settings()  # validate the settings now, with their own messages
    return blueprint


def load(path: Path) -> Blueprint:
    """Read a blueprint file: TOML (``.toml``), YAML (``.yaml``/``.yml``) or JSON."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise SpecError(f"cannot read blueprint {path}: {error.strerror}") from None
    if len(raw) > MAX_BLUEPRINT:
        raise SpecError(f"blueprint {path} is larger than 1 MiB")
    suffix = path.suffix.lower()
    try:
        text = raw.decode()
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = _load_yaml(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise SpecError(f"blueprint {path} must end in .toml, .yaml, .yml or .json")
    except UnicodeDecodeError:
        raise SpecError(f"blueprint {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"malformed blueprint {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise SpecError(f"malformed blueprint {path}: {error.msg} at line {error.lineno}") from None
    try:
        return from_data(data)
    except SpecError as error:
        raise SpecError(f"blueprint {path}: {error}") from None


def _load_yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SpecError(f"malformed YAML{where}: {getattr(error, 'problem', error)}") from None
