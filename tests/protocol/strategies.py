"""Hypothesis strategies for every protocol message, built from the messages' own types."""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Mapping
from typing import Any

import attrs
from hypothesis import strategies as st

from dployr.logs.values import MAX_CURSOR, STREAMS, LogLine
from dployr.metrics import ServiceSample
from dployr.models import HealthOptions, RestartPolicy, ServiceSettings, Source
from dployr.protocol.errors import ERROR_CODES, Error
from dployr.schedule import JobOptions
from dployr.staticsite import HeaderRule, Redirect, StaticOptions
from tests.metrics.strategies import service_samples
from tests.store.strategies import service_settings, sources

# Text as it can travel: any UTF-8 (no lone surrogates).
texts = st.text(st.characters(codec="utf-8"), max_size=30)
numbers = st.floats(allow_nan=False, allow_infinity=False)
names = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)

OVERRIDES: dict[Any, st.SearchStrategy[Any]] = {
    str: texts,
    float: numbers,
    int: st.integers(-(2**53), 2**53),
    bool: st.booleans(),
    ServiceSettings: service_settings,
    Source: sources,
    HealthOptions: st.just(HealthOptions()) | st.builds(HealthOptions, failures=st.integers(1, 9)),
    RestartPolicy: st.just(RestartPolicy())
    | st.builds(RestartPolicy, min_uptime=st.floats(0, 3600)),
    ServiceSample: service_samples,
    # A job's options are checked when built: schedules and zones dployr runs.
    JobOptions: st.just(JobOptions())
    | st.builds(
        JobOptions,
        schedule=st.sampled_from([None, "0 3 * * *", "@hourly", "*/5 9-17 * * 1-5"]),
        timezone=st.sampled_from(["UTC", "Europe/Berlin"]),
        timeout=st.floats(1, 86400),
        starting_deadline=st.none() | st.floats(0, 86400),
    ),
    # A static site's options are checked when built: folders and rules it can publish.
    StaticOptions: st.just(StaticOptions())
    | st.builds(
        StaticOptions,
        publish_dir=st.sampled_from([None, ".", "dist", "build/site"]),
        spa=st.booleans(),
        redirects=st.lists(
            st.sampled_from([Redirect("/old", "/new"), Redirect("/blog/*", "/news/:splat", 302)]),
            max_size=2,
        ).map(tuple),
        headers=st.lists(st.just(HeaderRule("/*", {"X-Frame-Options": "DENY"})), max_size=1).map(
            tuple
        ),
    ),
    LogLine: st.builds(
        LogLine,
        cursor=st.integers(1, MAX_CURSOR),
        ts=numbers,
        stream=st.sampled_from(sorted(STREAMS)),
        line=texts,
        deployment=st.none() | st.integers(0, MAX_CURSOR),
        continued=st.booleans(),
    ),
    Error: st.builds(Error, st.sampled_from(ERROR_CODES), texts),
}


_NAMES = ("name", "instance")
"""Fields holding a service's or an instance's name (checked when built)."""


def _named(tp: Any) -> st.SearchStrategy[Any]:
    return st.none() | names if type(None) in typing.get_args(tp) else names


def values(tp: Any) -> st.SearchStrategy[Any]:
    """Any valid value of the type ``tp`` (an attrs class, a model, a union, a container)."""
    if tp in OVERRIDES:
        return OVERRIDES[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return st.none()
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    if origin in (typing.Union, types.UnionType):
        return st.one_of([values(arg) for arg in args])
    if origin is typing.Literal:  # an instance's state
        return st.sampled_from(args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(values(args[0]), max_size=3).map(tuple)
        return st.tuples(*[values(arg) for arg in args])
    if origin is frozenset:
        return st.frozensets(values(args[0]), max_size=3)
    if origin in (Mapping, dict):
        return st.dictionaries(values(args[0]), values(args[1]), max_size=3)
    if attrs.has(tp):
        fields = attrs.fields(attrs.resolve_types(tp))
        return st.builds(
            tp,
            **{
                field.name: _named(field.type) if field.name in _NAMES else values(field.type)
                for field in fields
            },
        )
    raise NotImplementedError(f"no strategy for {tp!r}")
