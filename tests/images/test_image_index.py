"""Whether podman's store holds an image, read from its image index (no podman run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dployr.engine import podman

REF = "registry.example:5000/team/api@sha256:" + "ab" * 32


def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, driver: str, names: list[str]) -> Path:
    """A storage.conf naming a store in ``tmp_path`` whose index holds one image."""
    conf = tmp_path / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "{driver}"\ngraphroot = "{tmp_path}/root"\n'
        f'rootless_storage_path = "{tmp_path}/root"\n'
    )
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(conf))
    index = tmp_path / "root" / f"{driver}-images" / "images.json"
    index.parent.mkdir(parents=True)
    index.write_text(json.dumps([{"id": "c0ffee" * 10 + "abcd", "names": names}]))
    return index


def test_an_image_pulled_by_digest_is_found_by_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = store(tmp_path, monkeypatch, "vfs", [REF, "registry.example:5000/team/api:1.4"])
    assert podman.image_index() == index
    assert podman.in_store(REF)
    assert not podman.in_store(REF.replace("ab", "cd"))  # another digest


@pytest.mark.parametrize("content", ["", "{not json", '{"an": "object"}', "[1, 2]"])
def test_an_index_that_cannot_be_read_finds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    index = store(tmp_path, monkeypatch, "overlay", [REF])
    index.write_text(content)
    assert not podman.in_store(REF)  # the deploy asks podman then


def test_no_index_where_the_configuration_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{tmp_path}/nowhere"\n'
                    f'rootless_storage_path = "{tmp_path}/nowhere"\n')  # fmt: skip
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(conf))
    assert podman.image_index() is None
    assert not podman.in_store(REF)
