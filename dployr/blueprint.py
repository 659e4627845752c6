"""Blueprints: a service described in one document (TOML, YAML or JSON), the deploy body.

The fields are those users of this kind of tool know::

    name = "my-api"
    type = "web"                # web, worker or static [default: web with a port, else worker]
    description = "The public API"
    build_cmd = "pip install -r requirements.txt"
    run_cmd = "python app.py"
    port = 8080
    working_dir = "."
    health_check = "/health"

    [remote]
    url = "https://github.com/me/my-api.git"
    branch = "main"

    [restart]                   # the restart policy; every key is optional
    mode = "on-failure"         # always (the default), on-failure or never
    delay = "1s"                # the second restart's delay (the first is at once) ...
    max_delay = "30s"           # ... doubling up to this
    max_restarts = 5            # more restarts than this within window: failed
    window = "60s"
    min_uptime = "5s"           # up this long: counts as started, the backoff starts over

    [job]                       # a scheduled job (see docs/jobs.md); every key is optional
    schedule = "0 3 * * *"      # 5 cron fields or @hourly, @daily ...; none: run when asked
    timezone = "Europe/Berlin"  # the zone the schedule is read in [UTC]
    concurrency = "forbid"      # a run due while one is active: forbid, replace or allow
    timeout = "1h"              # then SIGTERM, the stop grace, SIGKILL
    starting_deadline = "2h"    # how late a run missed while dployr was down may start

    [env_vars]
    LOG_LEVEL = "info"

    [secrets]
    DATABASE_URL = "postgres://…"

The same shape is the body of ``POST /api/v1/services/{name}/deploy``.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from dployr import serde
from dployr.errors import SpecError
from dployr.models import RestartMode, ServiceSettings, ServiceType, Source, check_name
from dployr.protocol.messages import check_instance_name
from dployr.timeparse import parse_duration

MAX_BLUEPRINT = 1 << 20


REMOTE_FIELDS = ("url", "branch", "commit")
"""The keys of a ``remote`` table."""


def remote_table(source: Source) -> dict[str, str]:
    """A source as the ``remote`` table of a blueprint, a deploy body or a settings change:
    ``{"url": ..., "branch": ..., "commit": ...}``, without the fields it leaves unset.

    The stored settings (and ``GET .../settings``) write the same source as
    ``source: {"remote": ..., "branch": ..., "commit": ...}``; this and :func:`source_of`
    are the one place that converts between the two shapes.
    """
    table = {"url": source.remote, "branch": source.branch, "commit": source.commit}
    return {key: value for key, value in table.items() if value is not None}


def source_of(table: Any) -> Source:
    """The source a ``remote`` table stands for, validated, or SpecError naming the bad field."""
    if not isinstance(table, dict):
        raise SpecError(f"remote must be an object of {', '.join(REMOTE_FIELDS)}, not {table!r}")
    unknown = sorted(set(table) - set(REMOTE_FIELDS))
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise SpecError(
            f"unknown field{plural}: {', '.join(map(str, unknown))} (remote has "
            f"{', '.join(REMOTE_FIELDS)})"
        )
    if table.get("url") is None:
        raise SpecError("missing field: remote.url (a git URL or a local path)")
    for key in REMOTE_FIELDS:
        value = table.get(key)
        if value is not None and not isinstance(value, str):
            raise SpecError(f"remote.{key} must be text, not {value!r}")
    return Source(table["url"], table.get("branch"), table.get("commit"))


@attrs.frozen
class Blueprint:
    """A service in one document: its settings, variables and secrets.

    Every field of :class:`~dployr.models.ServiceSettings` may appear (``source`` is
    written as ``remote``), so a setting added to the model is a blueprint field too.
    """

    settings: ServiceSettings
    name: str | None = None
    env_vars: Mapping[str, str] = attrs.field(factory=dict)
    secrets: Mapping[str, str] = attrs.field(factory=dict)
    instance: str | None = None
    """The instance of the cluster to run it on (``dployr deploy --instance``); None:
    where it runs already, else the control plane's own."""

    def body(self) -> dict[str, Any]:
        """The blueprint as the body of ``POST /api/v1/services/{name}/deploy``."""
        data: dict[str, Any] = serde.unstructure(self.settings)
        del data["source"]
        data["remote"] = remote_table(self.settings.source)
        if self.name is not None:
            data["name"] = self.name
        if self.env_vars:
            data["env_vars"] = dict(self.env_vars)
        if self.secrets:
            data["secrets"] = dict(self.secrets)
        if self.instance is not None:
            data["instance"] = self.instance
        return data


_TEXT_FIELDS = (
    "name",
    "description",
    "source",
    "build_cmd",
    "run_cmd",
    "working_dir",
    "health_check",
    "image",
    "dockerfile",
    "instance",
)
_OWN_FIELDS = frozenset({"name", "source", "remote", "env_vars", "secrets", "instance"})
"""Fields of a blueprint that are not service settings."""


def _check_types(data: dict[str, Any]) -> dict[str, Any]:
    """Refuse values of the wrong type instead of converting them (``run_cmd = 3``).

    ``remote`` may also be written as just the URL or path. Returns the data to structure.
    """
    data = dict(data)
    for key in _TEXT_FIELDS:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise SpecError(f"{key} must be text, not {value!r}")
    port = data.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
        raise SpecError(f"port must be a whole number from 1 to 65535, not {port!r}")
    grace = data.get("stop_grace")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int | float)):
        raise SpecError(f"stop_grace must be a number of seconds, not {grace!r}")
    if data.get("restart") is not None:
        data["restart"] = _restart_table(data["restart"])
    if data.get("job") is not None:
        data["job"] = _job_table(data["job"])
    kind, kinds = data.get("type"), [t.value for t in ServiceType]
    if kind is not None and kind not in kinds:
        raise SpecError(f"type must be one of {', '.join(kinds)}, not {kind!r}")
    remote = data.get("remote")
    if isinstance(remote, str):
        data["remote"] = remote = {"url": remote}
    if remote is None and isinstance(data.get("image"), str):
        data["remote"] = remote = {"url": data["image"]}  # an image is its own source
    if remote is None:
        raise SpecError("missing field: remote (a git URL or a local path)")
    if not isinstance(remote, dict):
        raise SpecError("remote must be a URL or path, or a table with url, branch, commit")
    for table in ("env_vars", "secrets", "build_args"):
        values = data.get(table)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise SpecError(f'{table} must be a table of NAME = "value"')
        for key, value in values.items():
            if not isinstance(value, str):
                raise SpecError(f"{table}.{key} must be text (quote it), not {value!r}")
    return data


_RESTART_DURATIONS = ("delay", "max_delay", "window", "min_uptime")


def _restart_table(table: Any) -> dict[str, Any]:
    """The ``[restart]`` table, its durations (``"5s"`` or a number of seconds) in seconds."""
    if not isinstance(table, dict):
        raise SpecError(
            "restart must be a table of mode, delay, max_delay, max_restarts, window, min_uptime"
        )
    fields: dict[str, Any] = dict(table)
    mode = fields.get("mode")
    modes = [m.value for m in RestartMode]
    if mode is not None and mode not in modes:
        raise SpecError(f"restart.mode must be one of {', '.join(modes)}, not {mode!r}")
    for key in _RESTART_DURATIONS:
        if isinstance(fields.get(key), str):
            fields[key] = parse_duration(fields[key], f"restart.{key}")
    return fields


def _job_table(table: Any) -> dict[str, Any]:
    """The ``[job]`` table, its durations (``"1h"`` or a number of seconds) in seconds."""
    if not isinstance(table, dict):
        raise SpecError(
            "job must be a table of schedule, timezone, concurrency, timeout, starting_deadline"
        )
    fields: dict[str, Any] = dict(table)
    for key in ("timeout", "starting_deadline"):
        if isinstance(fields.get(key), str):
            fields[key] = parse_duration(fields[key], f"job.{key}")
    return fields


def from_data(data: Any) -> Blueprint:
    """A blueprint from parsed data, validated, or SpecError naming the bad field."""
    if not isinstance(data, dict):
        raise SpecError("a blueprint must be a table (mapping) of fields")
    data = _check_types(data)
    name = data.get("name")
    if name is not None:
        check_name(name)
    instance = data.get("instance")
    if instance is not None:
        check_instance_name(instance)
    if data.get("source") not in (None, "git", "local"):
        raise SpecError(f"source must be 'git' or 'local', not {data['source']!r}")
    source = source_of(data["remote"])
    fields = {k: v for k, v in data.items() if k not in _OWN_FIELDS}
    fields["source"] = serde.unstructure(source)
    return Blueprint(
        settings=serde.structure(fields, ServiceSettings),
        name=name,
        env_vars=dict(data.get("env_vars") or {}),
        secrets=dict(data.get("secrets") or {}),
        instance=instance,
    )


MAX_YAML_DEPTH = 64
"""How deeply a blueprint's tables and lists may nest (a blueprint needs three levels)."""

MAX_YAML_NODES = 100_000
"""How many values a YAML blueprint may hold once its aliases are expanded (an alias bomb
of a few lines stands for billions)."""


def load(path: Path) -> Blueprint:
    """Read a blueprint file: TOML (``.toml``), YAML (``.yaml``/``.yml``) or JSON.

    Only a regular file of at most 1 MiB is read (a pipe, ``/dev/zero`` or a folder is
    refused before a byte is read), and a YAML file is read with the safe loader, its
    nesting and the size its aliases expand to bounded.
    """
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise SpecError(f"blueprint {path} must end in .toml, .yaml, .yml or .json")
    raw = _read(path)
    try:
        text = raw.decode()
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            data = _load_yaml(text)
    except UnicodeDecodeError:
        raise SpecError(f"blueprint {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"malformed blueprint {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise SpecError(f"malformed blueprint {path}: {error.msg} at line {error.lineno}") from None
    except RecursionError:  # TOML or JSON arrays nested thousands deep
        raise SpecError(f"blueprint {path} is nested too deeply") from None
    except SpecError as error:
        raise SpecError(f"blueprint {path}: {error}") from None
    try:
        return from_data(data)
    except SpecError as error:
        raise SpecError(f"blueprint {path}: {error}") from None


def _read(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_BLUEPRINT bytes, or SpecError."""
    try:
        # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise SpecError(f"cannot read blueprint {path}: {error.strerror}") from None
    with open(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SpecError(
                f"blueprint {path} is not a regular file (a folder, pipe or device cannot be "
                "a blueprint)"
            )
        if info.st_size > MAX_BLUEPRINT:
            raise SpecError(f"blueprint {path} is larger than 1 MiB")
        try:
            raw = file.read(MAX_BLUEPRINT + 1)  # it may have grown since the fstat
        except OSError as error:
            raise SpecError(f"cannot read blueprint {path}: {error.strerror}") from None
    if len(raw) > MAX_BLUEPRINT:
        raise SpecError(f"blueprint {path} is larger than 1 MiB")
    return raw


def _load_yaml(text: str) -> Any:
    import yaml  # only when a blueprint is YAML: 1 MB of the daemon's memory otherwise

    class Loader(yaml.SafeLoader):
        """The safe loader, refusing deep nesting while it composes (before any recursion
        limit is hit)."""

        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self.depth += 1
            if self.depth > MAX_YAML_DEPTH:
                raise SpecError(f"YAML nested more than {MAX_YAML_DEPTH} levels deep")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    loader = Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node, yaml.nodes)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SpecError(f"malformed YAML{where}: {getattr(error, 'problem', error)}") from None
    finally:
        loader.dispose()


def _check_expanded_size(root: Any, nodes: Any) -> None:
    """Refuse a YAML document that, aliases expanded, holds more than MAX_YAML_NODES values
    or refers to itself. Linear in the document: each shared node is sized once."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise SpecError("YAML alias refers to itself")
        open_nodes.add(key)
        total = 1
        if isinstance(node, nodes.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, nodes.MappingNode):
            total += sum(size(key) + size(value) for key, value in node.value)
        if total > MAX_YAML_NODES:
            raise SpecError(
                f"YAML holds more than {MAX_YAML_NODES:,} values once its aliases are expanded"
            )
        open_nodes.discard(key)
        sizes[key] = total
        return total

    size(root)
