"""Hypothesis strategies for valid domain values."""

from __future__ import annotations

from hypothesis import strategies as st

from dployr.models import MAX_DESCRIPTION, ServiceSettings, Source

# Any text SQLite and JSON can carry: no lone surrogates, no NUL.
_characters = st.characters(codec="utf-8", exclude_characters="\x00")
_line = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00\n"),
    min_size=1,
    max_size=200,
).filter(lambda text: bool(text.strip()))
_command = st.text(_characters, min_size=1, max_size=300).filter(lambda text: bool(text.strip()))
_ref = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,39}", fullmatch=True).filter(
    lambda ref: ".." not in ref
)

sources = st.builds(
    Source,
    remote=_line,
    branch=st.none() | _ref,
    commit=st.none() | st.from_regex(r"[0-9a-f]{7,40}", fullmatch=True),
)

service_settings = st.builds(
    ServiceSettings,
    source=sources,
    run_cmd=_command,
    build_cmd=st.none() | st.just("") | _command,
    port=st.none() | st.integers(1, 65535),
    working_dir=st.just(".") | st.from_regex(r"[a-z0-9_]+(/[a-z0-9_.]+)*", fullmatch=True),
    description=st.text(_characters, max_size=MAX_DESCRIPTION // 10),
    health_check=st.none() | st.from_regex(r"/[A-Za-z0-9/_.?=&%-]{0,60}", fullmatch=True),
    stop_grace=st.floats(0, 3600, allow_nan=False) | st.integers(0, 3600),
)
"""Any valid :class:`ServiceSettings`, optional fields None or set."""

__all__ = ["service_settings", "sources"]
