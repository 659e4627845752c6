"""A pull's progress: layers and bytes, from podman's output and its download folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from dployr.engine.pull_progress import PullProgress, downloaded, size_text
from tests.cli.conftest import Daemon, free_port, http_get
from tests.images.conftest import Registry, image_context, podman_cmd

BLOB = "Copying blob sha256:" + "ab" * 32


def push_fresh(folder: Path, ref: str) -> str:
    """Push to ``ref`` an image of a test's own (1.5 MB that no store holds), so that its
    layers are downloaded when it is pulled; its id (a pull gives back the same id: the
    test removes it by id, with every name it got)."""
    context = image_context(folder, "fresh")
    (context / "www" / "noise").write_bytes(os.urandom(1_500_000))
    image_id = podman_cmd("build", "--quiet", "--layers=false", str(context), capture=True)
    image_id = image_id.strip()
    try:
        podman_cmd("push", "--quiet", "--tls-verify=false", image_id, ref)
    finally:
        podman_cmd("rmi", "--force", "--ignore", image_id, capture=True)
    return image_id


def test_layers_and_bytes_are_shown_when_they_change() -> None:
    progress = PullProgress()
    assert progress.news() is None  # nothing started yet
    assert not progress.lines(["Trying to pull r/web:1...", "Getting image source signatures"])
    progress.lines([BLOB, BLOB])
    progress.measured(4_300_800)
    assert progress.news() == "2 layers, 4.3 MB downloaded"
    assert progress.news() is None  # the same again: nothing to show
    progress.measured(20_012_017)
    assert progress.news() == "2 layers, 20.0 MB downloaded"
    assert not progress.lines([BLOB, "Copying config sha256:" + "cd" * 32])
    assert progress.lines(["Writing manifest to image destination"])  # every layer is there
    assert not progress.lines(["Storing signatures"])  # (said once)
    progress.measured(0)  # podman cleared its folder: what was downloaded stays counted
    assert progress.news() == "3 layers, 20.0 MB downloaded, storing the image"


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (812_345, "812 kB"), (20_012_017, "20.0 MB"),
     (123_456_789, "123 MB"), (1_250_000_000, "1.25 GB"), (5 * 10**12, "5000 GB")],
)  # fmt: skip
def test_sizes_read_as_people_read_them(size: int, text: str) -> None:
    assert size_text(size) == text


def test_downloaded_counts_the_files_under_the_folder(tmp_path: Path) -> None:
    (tmp_path / "storage1").mkdir()
    (tmp_path / "storage1" / "1").write_bytes(b"x" * 1000)
    (tmp_path / "storage1" / "2").write_bytes(b"y" * 234)
    os.symlink("/etc/hostname", tmp_path / "link")  # not podman's: not counted
    assert downloaded(tmp_path) == 1234
    assert downloaded(tmp_path / "gone") == 0


@pytest.mark.slow
async def test_a_pull_shows_its_layers_and_bytes_as_the_deploy_is_followed(
    daemon: Daemon, registry: Registry, tmp_path: Path
) -> None:
    ref = f"{registry.host}/dployr-tests/progress:{os.environ['TESTS_RUN']}"
    image_id = push_fresh(tmp_path / "image", ref)
    port = free_port()
    try:
        out = await daemon.ok("deploy", "--name", "fresh", "--image", ref, "--port", str(port),
                              "--min-uptime", "0.3")  # fmt: skip
        shown = re.findall(r"==> pull progress: (\d+) layers?, ([\d.]+) MB downloaded", out)
        assert shown, out
        layers, megabytes = shown[-1]
        assert int(layers) == 1, out  # (built without podman's layer cache: one layer)
        # busybox and the noise, compressed (random bytes do not shrink)
        assert 1.5 <= float(megabytes) < 4, out
        assert await http_get(port, "/version") == "fresh\n"
        await daemon.ok("delete", "fresh", "--yes", "--purge-image")
    finally:
        podman_cmd("rmi", "--force", "--ignore", image_id, capture=True)
