"""The remote and ref rules of a source: pure checks, done before git ever runs.

They need no git, no process and no event loop: each is a function of its text.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dployr.engine.sources import remotes
from dployr.engine.sources.remotes import SourceError, Transport, check_remote
from dployr.errors import SpecError
from dployr.models import Source
from tests.engine.test_sources import HOSTILE


@pytest.mark.parametrize(
    ("remote", "transport"),
    [
        ("https://github.com/acme/web.git", Transport.HTTPS),
        ("https://user:token@example.com/acme/web.git", Transport.HTTPS),
        ("ssh://git@example.com:2222/acme/web.git", Transport.SSH),
        ("ssh://[::1]/srv/web.git", Transport.SSH),
        ("git://example.com/web.git", Transport.GIT),
        ("file:///srv/git/web.git", Transport.FILE),
        ("git@github.com:acme/web.git", Transport.SSH),
        ("example.com:web.git", Transport.SSH),
        ("git@[::1]:web.git", Transport.SSH),
        ("[example.com:2222]:web.git", Transport.SSH),
        ("/srv/git/web", Transport.FILE),
    ],
)
def test_check_remote_accepts_the_four_transports(remote: str, transport: Transport) -> None:
    checked = check_remote(remote)
    assert checked.transport is transport
    assert checked.url == remote
    assert (checked.local_path is not None) == (remote == "/srv/git/web")


def test_relative_path_is_resolved_against_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    checked = check_remote("code/web")
    assert checked.transport is Transport.FILE
    assert checked.url == str(tmp_path / "code" / "web")
    assert checked.local_path == tmp_path / "code" / "web"
    # A ':' after a '/' does not make it an ssh address (git's own rule).
    assert check_remote("./a:b").local_path == tmp_path / "a:b"


UNBUILDABLE = [
    ("file:///x\nfoo", "control characters"),
    ("https://example.com/x\r.git", "control characters"),
    ("/srv/x\x00", "control characters"),
    ("", "empty"),
    ("   ", "empty"),
]


@pytest.mark.parametrize(("remote", "reason"), HOSTILE + UNBUILDABLE)
def test_check_remote_refuses_hostile_and_unsupported_remotes(
    remote: str, reason: str, tmp_path: Path
) -> None:
    with pytest.raises(SourceError, match=re.escape(reason)) as caught:
        check_remote(remote.format(pwned=tmp_path / "pwned"))
    assert "\n" not in str(caught.value)


@given(st.text())
def test_check_remote_never_lets_an_option_or_a_helper_through(remote: str) -> None:
    try:
        checked = check_remote(remote)
    except SourceError:
        return
    assert not checked.url.startswith("-")
    assert "::" not in checked.url.split("/", 1)[0] or checked.transport is Transport.SSH
    assert all(ch == " " or ch.isprintable() for ch in checked.url)


@given(st.text(min_size=1).map(lambda text: "-" + text))
def test_anything_starting_with_a_dash_is_refused(remote: str) -> None:
    with pytest.raises(SourceError):
        check_remote(remote)


@given(st.text(), st.sampled_from(["\n", "\r", "\t", "\x00", "\x1b", "\x7f"]), st.text())
def test_control_characters_are_refused(before: str, control: str, after: str) -> None:
    with pytest.raises(SourceError):
        check_remote("https://example.com/" + before + control + after)


@pytest.mark.parametrize("branch", ["main", "feature/x", "release-1.2", "v1.0_rc"])
def test_check_branch_accepts(branch: str) -> None:
    assert remotes.check_branch(branch) == branch


@pytest.mark.parametrize(
    "branch",
    ["", "-f", "--upload-pack=x", "a..b", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[", "a\\b",
     "@", "a@{1}", "/a", "a/", "a.", "a.lock", ".a", "a/.b", "a//b", "x\n"],
)  # fmt: skip
def test_check_branch_refuses(branch: str) -> None:
    with pytest.raises(SourceError, match="not a valid git branch name"):
        remotes.check_branch(branch)


def test_check_commit() -> None:
    assert remotes.check_commit("ABCDEF1") == "abcdef1"
    for bad in ["abc", "xyz1234", "-abcd", "abcd^{tree}", "a" * 65, "HEAD"]:
        with pytest.raises(SourceError, match="not a commit id"):
            remotes.check_commit(bad)


def test_source_itself_refuses_line_breaks_and_empty_remotes() -> None:
    for remote in ["file:///x\nfoo", "", "  "]:
        with pytest.raises(SpecError):
            Source(remote)


def test_messages_hide_an_https_token() -> None:
    remote = check_remote("https://user:s3cret@example.com/web.git")
    assert remotes.display(remote) == "https://user:***@example.com/web.git"
