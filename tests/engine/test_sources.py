"""Fetching and checking out sources, against real git repositories made in ``tmp_path``.

No mocks: git is the real binary. Where a test must prove that git did *not* run, a spy
``git`` placed first on PATH records any call.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from dployr.engine import sources
from dployr.engine.sources import SourceError
from dployr.errors import SpecError
from dployr.models import Source

GIT_ENV = {
    **{key: value for key, value in os.environ.items() if not key.startswith("GIT_")},
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    # Reading a repository must not refresh (write) its index.
    "GIT_OPTIONAL_LOCKS": "0",
}


async def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` for the test's own setup and checks."""
    result = await trio.run_process(
        ["git", "-C", str(repo), *args], capture_stdout=True, capture_stderr=True, env=GIT_ENV
    )
    return result.stdout.decode().strip()


async def commit_file(repo: Path, name: str, text: str, message: str) -> str:
    """Write ``name`` in ``repo``, commit it, and return the new commit's SHA."""
    await trio.Path(repo, name).write_text(text)
    await git(repo, "add", "--", name)
    await git(repo, "commit", "--quiet", "-m", message)
    return await git(repo, "rev-parse", "HEAD")


class Repo:
    """A source repository: ``main`` (two commits, tagged v1 at the first) and ``feature``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.first = ""
        self.main = ""
        self.feature = ""


@pytest.fixture
async def repo(tmp_path: Path) -> Repo:
    made = Repo(tmp_path / "src")
    await git(tmp_path, "init", "--quiet", "-b", "main", str(made.path))
    await trio.Path(made.path, "run.sh").write_text("#!/bin/sh\necho hi\n")
    await trio.Path(made.path, "run.sh").chmod(0o755)
    await trio.Path(made.path, "link").symlink_to("run.sh")
    await git(made.path, "add", "run.sh", "link")
    made.first = await commit_file(made.path, "app.txt", "v1\n", "first")
    await git(made.path, "tag", "v1")
    made.main = await commit_file(made.path, "app.txt", "v2\n", "second")
    await git(made.path, "checkout", "--quiet", "-b", "feature")
    made.feature = await commit_file(made.path, "feature.txt", "f\n", "feature")
    await git(made.path, "checkout", "--quiet", "main")
    return made


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "data" / "services" / "web" / "cache"


@pytest.fixture
def releases(tmp_path: Path) -> Path:
    return tmp_path / "data" / "services" / "web" / "releases"


def leftovers(folder: Path) -> list[str]:
    """Hidden half-made siblings (``.<name>.partial-*``, ``.new-*``, ``.old-*``) in ``folder``."""
    if not folder.exists():
        return []
    return sorted(entry.name for entry in folder.iterdir() if entry.name.startswith("."))


HOSTILE = [
    ("ext::sh -c touch% {pwned}", "transport::address"),
    ("--upload-pack=touch {pwned}", "starts with '-'"),
    ("-oProxyCommand=touch {pwned}", "starts with '-'"),
    ("fd::17", "transport::address"),
    ("foo::bar", "transport::address"),
    ("::foo", "transport::address"),
    ("http://example.com/x.git", "use https"),
    ("HTTP://example.com/x.git", "use https"),
    ("ftp://example.com/x.git", "'ftp'"),
    ("git+ssh://example.com/x.git", "'git+ssh'"),
    ("ssh://-oProxyCommand=touch%20{pwned}/x", "valid host"),
    ("ssh://-oProxyCommand=x@example.com/x", "valid user"),
    ("git@-oProxyCommand=touch:x", "valid host"),
    ("-@example.com:x", "starts with '-'"),
    ("ssh://example.com", "no repository path"),
    ("example.com:", "no repository path"),
    ("file://example.com/x", "absolute path"),
    ("https://exa mple.com/x.git", "valid host"),
    (" /srv/x", "spaces"),
]
"""Remotes that would run a command or read an option if git saw them."""


# ---------------------------------------------------------------------------------------------
# Hostile remotes: git never runs.


@pytest.fixture
def git_spy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a ``git`` first on PATH that only records that it ran; return the record's path."""
    spy_dir = tmp_path / "spy"
    spy_dir.mkdir()
    record = tmp_path / "git-ran"
    spy = spy_dir / "git"
    spy.write_text(f"#!/bin/sh\necho \"$@\" >> '{record}'\nexit 1\n")
    spy.chmod(0o755)
    monkeypatch.setenv("PATH", f"{spy_dir}{os.pathsep}{os.environ['PATH']}")
    return record


async def test_the_git_spy_sees_git_run(git_spy: Path, cache: Path, repo: Repo) -> None:
    # The control for the test below: had git run, the spy would know.
    with pytest.raises(SourceError, match="git init failed"):
        await sources.fetch(Source(str(repo.path)), cache)
    assert await trio.Path(git_spy).exists()


@pytest.mark.parametrize(("remote", "reason"), HOSTILE)
async def test_hostile_remotes_are_refused_before_git_runs(
    remote: str, reason: str, git_spy: Path, cache: Path, tmp_path: Path
) -> None:
    source = Source(remote.format(pwned=tmp_path / "pwned"))
    with pytest.raises(SourceError, match=re.escape(reason)):
        await sources.fetch(source, cache)
    with pytest.raises(SourceError, match=re.escape(reason)):
        await sources.checkout(source, cache, "0" * 40, tmp_path / "release")
    assert not await trio.Path(git_spy).exists()
    assert not await trio.Path(tmp_path / "pwned").exists()
    assert not await trio.Path(cache.parent).exists()
    assert not await trio.Path(tmp_path / "release").exists()


@pytest.mark.parametrize(
    ("branch", "commit"), [("-b", None), ("a:b", None), (None, "HEAD~1"), (None, "-abc")]
)
async def test_bad_refs_are_refused_before_git_runs(
    branch: str | None, commit: str | None, git_spy: Path, cache: Path, repo: Repo
) -> None:
    try:
        source = Source(str(repo.path), branch=branch, commit=commit)
    except SpecError:
        return  # refused even earlier
    with pytest.raises(SourceError):
        await sources.fetch(source, cache)
    assert not await trio.Path(git_spy).exists()


# ---------------------------------------------------------------------------------------------
# Fetching a git source.


async def test_fetch_local_path_gives_the_default_branch(repo: Repo, cache: Path) -> None:
    assert await sources.fetch(Source(str(repo.path)), cache) == repo.main
    assert await trio.Path(cache, "dployr-remote").read_text() == f"{repo.path}\n"


async def test_fetch_follows_a_changed_default_branch(repo: Repo, cache: Path) -> None:
    await sources.fetch(Source(str(repo.path)), cache)
    await git(repo.path, "checkout", "--quiet", "feature")
    assert await sources.fetch(Source(str(repo.path)), cache) == repo.feature


async def test_fetch_file_url(repo: Repo, cache: Path) -> None:
    assert await sources.fetch(Source(f"file://{repo.path}"), cache) == repo.main


async def test_fetch_bare_repository(repo: Repo, cache: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    await git(tmp_path, "clone", "--quiet", "--bare", str(repo.path), str(bare))
    assert await sources.fetch(Source(str(bare), branch="feature"), cache) == repo.feature


async def test_fetch_branch(repo: Repo, cache: Path) -> None:
    assert await sources.fetch(Source(str(repo.path), branch="feature"), cache) == repo.feature
    assert await sources.fetch(Source(str(repo.path), branch="main"), cache) == repo.main


@pytest.mark.parametrize("length", [40, 12, 7])
async def test_fetch_commit_full_and_short(repo: Repo, cache: Path, length: int) -> None:
    source = Source(str(repo.path), commit=repo.first[:length].upper())
    assert await sources.fetch(source, cache) == repo.first


async def test_fetch_commit_on_a_branch(repo: Repo, cache: Path) -> None:
    on_feature = Source(str(repo.path), branch="feature", commit=repo.feature[:10])
    assert await sources.fetch(on_feature, cache) == repo.feature
    with pytest.raises(SourceError, match=f"commit {repo.feature} is not on branch main"):
        await sources.fetch(Source(str(repo.path), branch="main", commit=repo.feature), cache)


async def test_fetch_commit_reachable_only_from_a_tag(repo: Repo, cache: Path) -> None:
    await git(repo.path, "checkout", "--quiet", "--detach", repo.first)
    tagged = await commit_file(repo.path, "hotfix.txt", "x\n", "hotfix")
    await git(repo.path, "tag", "hotfix")
    await git(repo.path, "checkout", "--quiet", "main")
    assert await sources.fetch(Source(str(repo.path), commit=tagged), cache) == tagged


async def test_a_tag_named_like_a_short_commit_does_not_stand_in_for_it(
    repo: Repo, cache: Path
) -> None:
    await git(repo.path, "tag", "abcdef0", repo.main)
    with pytest.raises(SourceError, match="commit abcdef0 was not found"):
        await sources.fetch(Source(str(repo.path), commit="abcdef0"), cache)


async def test_redeploy_fetches_into_the_cache_instead_of_recloning(
    repo: Repo, cache: Path
) -> None:
    source = Source(str(repo.path))
    assert await sources.fetch(source, cache) == repo.main
    marker = cache / "left-by-the-test"
    await trio.Path(marker).write_text("still here")
    objects_inode = (await trio.Path(cache, "objects").stat()).st_ino

    newer = await commit_file(repo.path, "app.txt", "v3\n", "third")
    assert await sources.fetch(source, cache) == newer

    assert await trio.Path(marker).read_text() == "still here"
    assert (await trio.Path(cache, "objects").stat()).st_ino == objects_inode
    assert leftovers(cache.parent) == []


async def test_a_changed_remote_reclones(repo: Repo, cache: Path, tmp_path: Path) -> None:
    await sources.fetch(Source(str(repo.path)), cache)
    marker = cache / "left-by-the-test"
    await trio.Path(marker).write_text("old cache")

    other = tmp_path / "other"
    await git(tmp_path, "init", "--quiet", "-b", "trunk", str(other))
    other_head = await commit_file(other, "other.txt", "o\n", "other")

    assert await sources.fetch(Source(str(other)), cache) == other_head
    assert not await trio.Path(marker).exists()
    assert await trio.Path(cache, "dployr-remote").read_text() == f"{other}\n"
    assert leftovers(cache.parent) == []


async def test_a_remote_that_fails_keeps_the_previous_cache(repo: Repo, cache: Path) -> None:
    await sources.fetch(Source(str(repo.path)), cache)
    marker = cache / "left-by-the-test"
    await trio.Path(marker).write_text("kept")
    with pytest.raises(SourceError, match="does not appear to be a git repository"):
        await sources.fetch(Source(f"file://{repo.path}-typo"), cache)
    assert await trio.Path(marker).read_text() == "kept"
    assert leftovers(cache.parent) == []


async def test_a_folder_in_the_way_of_the_cache_is_not_deleted(repo: Repo, cache: Path) -> None:
    await trio.Path(cache).mkdir(parents=True)
    await trio.Path(cache, "precious").write_text("mine")
    with pytest.raises(SourceError, match="not made by dployr"):
        await sources.fetch(Source(str(repo.path)), cache)
    assert await trio.Path(cache, "precious").read_text() == "mine"


async def test_fetch_streams_progress(repo: Repo, cache: Path) -> None:
    output: list[bytes] = []
    await sources.fetch(Source(str(repo.path)), cache, on_output=output.append)
    assert b"objects" in b"".join(output)


async def test_unknown_branch(repo: Repo, cache: Path) -> None:
    with pytest.raises(SourceError, match=r"^git fetch failed: fatal: couldn't find remote ref"):
        await sources.fetch(Source(str(repo.path), branch="nope"), cache)
    assert leftovers(cache.parent) == []
    assert not await trio.Path(cache).exists()


async def test_unknown_commit(repo: Repo, cache: Path) -> None:
    with pytest.raises(SourceError, match=f"^commit deadbeef was not found in {repo.path}$"):
        await sources.fetch(Source(str(repo.path), commit="deadbeef"), cache)


async def test_commit_no_longer_on_the_remote_is_refused(repo: Repo, cache: Path) -> None:
    # The cache still holds the feature commit, but the remote deleted its branch.
    await sources.fetch(Source(str(repo.path), commit=repo.feature), cache)
    await git(repo.path, "branch", "--quiet", "-D", "feature")
    with pytest.raises(SourceError, match="is not on any branch or tag"):
        await sources.fetch(Source(str(repo.path), commit=repo.feature), cache)


async def test_nonexistent_path(cache: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(SourceError, match=f"^the source folder {missing} does not exist$"):
        await sources.fetch(Source(str(missing)), cache)
    with pytest.raises(SourceError, match="does not appear to be a git repository"):
        await sources.fetch(Source(f"file://{missing}"), cache)


async def test_empty_repository_has_no_default_branch(cache: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    await git(tmp_path, "init", "--quiet", str(empty))
    with pytest.raises(SourceError, match="couldn't find remote ref HEAD"):
        await sources.fetch(Source(str(empty)), cache)


async def test_fetch_timeout_kills_git(cache: Path) -> None:
    hung_up = trio.Event()

    async def never_answer(stream: trio.SocketStream) -> None:
        async with stream:
            while await stream.receive_some():  # read git's request, answer nothing
                pass
        hung_up.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, never_answer, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        source = Source(f"git://127.0.0.1:{port}/web.git")
        with pytest.raises(SourceError, match=r"^git fetch timed out after 0\.5 s$"):
            await sources.fetch(source, cache, timeout=0.5)
        # git is gone (its connection closed), and so is the half-made cache.
        with trio.fail_after(10):
            await hung_up.wait()
        nursery.cancel_scope.cancel()
    assert leftovers(cache.parent) == []
    assert not await trio.Path(cache).exists()


@pytest.mark.parametrize(
    ("scheme", "reason"),
    [
        # The server hangs up at once; ssh reports that as closed or, under load, as reset.
        ("ssh", r"Connection (closed|reset) by 127\.0\.0\.1"),
        ("https", "fatal: unable to access"),
    ],
)
async def test_network_failures_are_one_clear_line(cache: Path, scheme: str, reason: str) -> None:
    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, hang_up, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        with trio.fail_after(30), pytest.raises(SourceError) as caught:
            await sources.fetch(Source(f"{scheme}://git@127.0.0.1:{port}/web.git"), cache)
        nursery.cancel_scope.cancel()
    message = str(caught.value)
    assert message.startswith("git fetch failed: ")
    assert re.search(reason, message)
    assert "\n" not in message


# ---------------------------------------------------------------------------------------------
# Checking out a git source.


async def test_checkout_writes_exactly_that_commit(repo: Repo, cache: Path, releases: Path) -> None:
    source = Source(str(repo.path), commit=repo.first)
    revision = await sources.fetch(source, cache)
    release = releases / "1"
    await sources.checkout(source, cache, revision, release)

    assert (release / "app.txt").read_text() == "v1\n"
    assert not (release / "feature.txt").exists()
    assert stat.S_IMODE((release / "run.sh").stat().st_mode) & 0o111
    assert os.readlink(release / "link") == "run.sh"
    assert sorted(path.name for path in release.iterdir()) == ["app.txt", "link", "run.sh"]
    assert leftovers(releases) == []


async def test_git_release_holds_no_repository(repo: Repo, cache: Path, releases: Path) -> None:
    # The release is what the service runs and may serve: a .git in it would serve the
    # repository's config and history.
    source = Source(str(repo.path))
    revision = await sources.fetch(source, cache)
    cache_head = (cache / "HEAD").read_text()
    await sources.checkout(source, cache, revision, releases / "1")
    assert not (releases / "1" / ".git").exists()
    assert (cache / "HEAD").read_text() == cache_head
    assert not (cache / "index").exists()
    assert leftovers(releases) == []


async def test_release_is_independent_of_the_cache(repo: Repo, cache: Path, releases: Path) -> None:
    source = Source(str(repo.path))
    revision = await sources.fetch(source, cache)
    release = releases / "1"
    await sources.checkout(source, cache, revision, release)

    await trio.to_thread.run_sync(shutil.rmtree, cache)

    assert (release / "app.txt").read_text() == "v2\n"
    assert not (release / "feature.txt").exists()


async def test_checkout_refuses_an_existing_release(
    repo: Repo, cache: Path, releases: Path
) -> None:
    source = Source(str(repo.path))
    revision = await sources.fetch(source, cache)
    await trio.Path(releases / "1").mkdir(parents=True)
    await trio.Path(releases / "1" / "keep").write_text("x")
    with pytest.raises(SourceError, match="already exists"):
        await sources.checkout(source, cache, revision, releases / "1")
    assert (releases / "1" / "keep").read_text() == "x"


async def test_failed_checkout_leaves_no_release(repo: Repo, cache: Path, releases: Path) -> None:
    source = Source(str(repo.path))
    await sources.fetch(source, cache)
    with pytest.raises(SourceError, match=r"^git checkout failed: "):
        await sources.checkout(source, cache, "1" * 40, releases / "1")
    assert not (releases / "1").exists()
    assert leftovers(releases) == []


async def test_checkout_needs_a_fetched_cache(repo: Repo, cache: Path, releases: Path) -> None:
    with pytest.raises(SourceError, match="fetch first"):
        await sources.checkout(Source(str(repo.path)), cache, repo.main, releases / "1")
    with pytest.raises(SourceError, match="not a full commit id"):
        await sources.checkout(Source(str(repo.path)), cache, "folder:abc", releases / "1")
    assert not await trio.Path(releases).exists()


async def test_checkout_cancelled_while_git_runs_leaves_nothing(
    repo: Repo, cache: Path, releases: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = Source(str(repo.path))
    revision = await sources.fetch(source, cache)
    # git read-tree says nothing, so a git first on PATH says it runs, then runs: the
    # checkout is cancelled the moment it hears of it, while git writes the release.
    real = shutil.which("git")
    wrapper = tmp_path / "wrapped" / "git"
    wrapper.parent.mkdir()
    wrapper.write_text(f"#!/bin/sh\necho running >&2\nexec '{real}' \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")
    with trio.fail_after(30), trio.CancelScope() as scope:
        await sources.checkout(
            source, cache, revision, releases / "1", on_output=lambda _: scope.cancel()
        )
    assert scope.cancelled_caught
    assert not await trio.Path(releases / "1").exists()
    assert leftovers(releases) == []


async def test_checkout_timeout_leaves_nothing(repo: Repo, cache: Path, releases: Path) -> None:
    source = Source(str(repo.path))
    revision = await sources.fetch(source, cache)
    with pytest.raises(SourceError, match=r"^git checkout timed out after 0 s$"):
        await sources.checkout(source, cache, revision, releases / "1", timeout=0)
    assert not await trio.Path(releases / "1").exists()
    assert leftovers(releases) == []


async def test_first_fetch_cancelled_while_git_runs_leaves_no_cache(
    repo: Repo, cache: Path
) -> None:
    with trio.CancelScope() as scope:
        await sources.fetch(Source(str(repo.path)), cache, on_output=lambda _: scope.cancel())
    assert scope.cancelled_caught
    assert not await trio.Path(cache).exists()
    assert leftovers(cache.parent) == []


# ---------------------------------------------------------------------------------------------
# The source repository is never modified.


def _listing(root: Path) -> list[tuple[str, int, int, str]]:
    """Every path under ``root`` with its mode, mtime and content digest (or link target)."""
    found = []
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            content = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            content = ""
        found.append((str(path.relative_to(root)), info.st_mode, info.st_mtime_ns, content))
    return found


async def snapshot(repo: Path) -> tuple[object, ...]:
    listing = await trio.to_thread.run_sync(_listing, repo)  # before git reads anything
    return (
        listing,
        await git(repo, "for-each-ref"),
        await git(repo, "symbolic-ref", "HEAD"),
        await git(repo, "rev-parse", "HEAD"),
        await git(repo, "status", "--porcelain", "--ignored"),
    )


async def test_source_repository_is_never_modified(repo: Repo, cache: Path, releases: Path) -> None:
    await trio.Path(repo.path, "uncommitted.txt").write_text("work in progress\n")
    before = await snapshot(repo.path)
    for number, source in enumerate(
        [
            Source(str(repo.path)),
            Source(str(repo.path), branch="feature"),
            Source(str(repo.path), commit=repo.first[:8]),
            Source(f"file://{repo.path}", branch="main", commit=repo.first),
        ]
    ):
        revision = await sources.fetch(source, cache)
        await sources.checkout(source, cache, revision, releases / str(number))
    assert await snapshot(repo.path) == before


# ---------------------------------------------------------------------------------------------
# Plain folders.


@pytest.fixture
async def folder(tmp_path: Path) -> Path:
    made = tmp_path / "site"
    await trio.Path(made, "static", "empty").mkdir(parents=True)
    await trio.Path(made, "index.html").write_text("<h1>hi</h1>\n")
    await trio.Path(made, "serve.sh").write_text("#!/bin/sh\n")
    await trio.Path(made, "serve.sh").chmod(0o750)
    await trio.Path(made, "static", "home.html").symlink_to("../index.html")
    await trio.Path(made, "outside").symlink_to(tmp_path / "secret")  # not followed
    await trio.Path(tmp_path, "secret").mkdir()
    await trio.Path(tmp_path, "secret", "key").write_text("do not copy")
    return made


async def test_folder_revision_is_a_content_digest(folder: Path, cache: Path) -> None:
    source = Source(str(folder))
    revision = await sources.fetch(source, cache)
    assert revision.startswith("folder:")
    assert len(revision) == len("folder:") + 64
    assert await sources.fetch(source, cache) == revision
    assert not cache.parent.exists()  # nothing is cached

    await trio.Path(folder, "serve.sh").chmod(0o755)
    changed_mode = await sources.fetch(source, cache)
    assert changed_mode != revision
    await trio.Path(folder, "index.html").write_text("<h1>hello</h1>\n")
    assert await sources.fetch(source, cache) not in {revision, changed_mode}


async def test_folder_checkout_copies_the_tree(
    folder: Path, cache: Path, releases: Path, tmp_path: Path
) -> None:
    source = Source(str(folder))
    revision = await sources.fetch(source, cache)
    release = releases / "1"
    await sources.checkout(source, cache, revision, release)

    assert (release / "index.html").read_text() == "<h1>hi</h1>\n"
    assert stat.S_IMODE((release / "serve.sh").stat().st_mode) == 0o750
    assert (release / "serve.sh").stat().st_mtime_ns == (folder / "serve.sh").stat().st_mtime_ns
    assert os.readlink(release / "static" / "home.html") == "../index.html"
    assert os.readlink(release / "outside") == str(tmp_path / "secret")
    assert (release / "static" / "empty").is_dir()
    assert not (release / "key").exists()
    assert leftovers(releases) == []
    # The copy has the revision it was asked for.
    assert await sources.fetch(Source(str(release)), cache) == revision


async def test_folder_checkout_leaves_out_every_git(
    folder: Path, cache: Path, releases: Path
) -> None:
    # A vendored repository and a submodule's .git file inside a plain folder.
    await trio.Path(folder, "vendor", "lib", ".git").mkdir(parents=True)
    await trio.Path(folder, "vendor", "lib", ".git", "config").write_text("[core]\n")
    await trio.Path(folder, "vendor", "lib", "lib.py").write_text("x = 1\n")
    await trio.Path(folder, "static", ".git").write_text("gitdir: ../.git/modules/static\n")
    source = Source(str(folder))
    revision = await sources.fetch(source, cache)
    release = releases / "1"
    await sources.checkout(source, cache, revision, release)

    assert (release / "vendor" / "lib" / "lib.py").read_text() == "x = 1\n"
    assert list(release.rglob(".git")) == []
    # A change inside a .git is no change of the source.
    await trio.Path(folder, "vendor", "lib", ".git", "config").write_text("[core]\nbare\n")
    assert await sources.fetch(source, cache) == revision


async def test_folder_changed_since_fetch_is_refused(
    folder: Path, cache: Path, releases: Path
) -> None:
    source = Source(str(folder))
    revision = await sources.fetch(source, cache)
    await trio.Path(folder, "new.txt").write_text("late\n")
    with pytest.raises(SourceError, match="changed since it was fetched"):
        await sources.checkout(source, cache, revision, releases / "1")
    assert not (releases / "1").exists()
    assert leftovers(releases) == []


async def test_folder_with_a_pipe_is_refused(folder: Path, cache: Path) -> None:
    os.mkfifo(folder / "pipe")
    with pytest.raises(SourceError, match="is not a file, folder or symlink"):
        await sources.fetch(Source(str(folder)), cache)


async def test_folder_has_no_branch_or_commit(folder: Path, cache: Path) -> None:
    with pytest.raises(SourceError, match="plain folder"):
        await sources.fetch(Source(str(folder), branch="main"), cache)


async def test_release_inside_the_source_folder_is_refused(folder: Path, cache: Path) -> None:
    source = Source(str(folder))
    revision = await sources.fetch(source, cache)
    with pytest.raises(SourceError, match="inside the source folder"):
        await sources.checkout(source, cache, revision, folder / "releases" / "1")
    assert not (folder / "releases").exists()


async def test_folder_revision_does_not_check_out_a_git_source(
    repo: Repo, folder: Path, cache: Path, releases: Path
) -> None:
    revision = await sources.fetch(Source(str(folder)), cache)
    with pytest.raises(SourceError, match="not a full commit id"):
        await sources.checkout(Source(str(repo.path)), cache, revision, releases / "1")
    with pytest.raises(SourceError, match="not a revision of the plain folder"):
        await sources.checkout(Source(str(folder)), cache, repo.main, releases / "1")


async def test_folder_copy_timeout_leaves_nothing(
    folder: Path, cache: Path, releases: Path
) -> None:
    source = Source(str(folder))
    revision = await sources.fetch(source, cache)
    with pytest.raises(SourceError, match=r"^copying the folder .* timed out after 0 s$"):
        await sources.checkout(source, cache, revision, releases / "1", timeout=0)
    assert not await trio.Path(releases / "1").exists()
    assert leftovers(releases) == []


async def test_cancelled_folder_copy_leaves_all_or_nothing(
    folder: Path, cache: Path, releases: Path
) -> None:
    # Cancelled while the copy runs in its thread: the copy stops at its next entry.
    for number in range(50):
        await trio.Path(folder, "static", f"{number}.txt").write_text(str(number))
    source = Source(str(folder))
    revision = await sources.fetch(source, cache)
    release = releases / "1"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sources.checkout, source, cache, revision, release)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert leftovers(releases) == []
    if await trio.Path(release).exists():
        assert await sources.fetch(Source(str(release)), cache) == revision


# ---------------------------------------------------------------------------------------------
# Error messages.


@pytest.mark.parametrize(
    ("stderr", "line"),
    [
        (b"fatal: couldn't find remote ref nope\n", "fatal: couldn't find remote ref nope"),
        (
            b"fatal: '/x' does not appear to be a git repository\n"
            b"fatal: Could not read from remote repository.\n\nPlease make sure...\n",
            "fatal: '/x' does not appear to be a git repository",
        ),
        (
            b"Host key verification failed.\r\nfatal: Could not read from remote repository.\n",
            "Host key verification failed.",
        ),
        (b"remote: Counting objects: 50%\rremote: done\n", "remote: done"),
        (b"fatal: \x1b[31mred\x1b[0m\n", "fatal: [31mred[0m"),
        (b"", ""),
    ],
)
def test_the_line_that_says_what_went_wrong(stderr: bytes, line: str) -> None:
    assert sources.git.last_line(stderr) == line
