"""An uploaded folder's archive: what the CLI packs is what a folder deploy would copy, and
unpacking it where it is built keeps the files, modes and symlinks, and nothing else."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
import trio

from dployr import archive
from dployr.engine.sources.folder import folder_revision
from dployr.protocol.errors import Error


def _folder(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "run").write_text("#!/bin/sh\necho hi\n")
    (root / "bin" / "run").chmod(0o755)
    (root / "app.py").write_text("print('hi')\n")
    (root / "latest").symlink_to("bin/run")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "vendor").mkdir()
    (root / "vendor" / ".git").write_text("gitdir: ../.git/modules/vendor\n")
    (root / "vendor" / "lib.py").write_text("x = 1\n")
    return root


def _packed(folder: Path, into: Path) -> Path:
    with into.open("xb") as file:
        archive.pack(folder, file)
    return into


async def test_an_unpacked_upload_holds_what_a_folder_deploy_copies(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "app")
    packed = _packed(folder, tmp_path / "app.tar.gz")
    folders = tmp_path / "folders"
    folders.mkdir()
    first, second = folders / "web", folders / "api"
    archive.unpack(packed, first)
    archive.unpack(packed, second)

    found = sorted(str(p.relative_to(first)) for p in first.rglob("*"))
    assert found == ["app.py", "bin", "bin/run", "latest", "vendor", "vendor/lib.py"]
    assert stat.S_IMODE((first / "bin" / "run").stat().st_mode) == 0o755
    assert os.readlink(first / "latest") == "bin/run"
    assert (first / "vendor" / "lib.py").read_text() == "x = 1\n"
    # The same archive unpacked twice is the same folder revision: a redeploy of an
    # unchanged upload builds the same thing.
    revisions = [await trio.to_thread.run_sync(folder_revision, str(f)) for f in (first, second)]
    assert revisions[0] == revisions[1]
    assert sorted(os.listdir(folders)) == ["api", "web"]  # nothing else beside


def _hostile(member: tarfile.TarInfo) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        fine = tarfile.TarInfo("app.py")
        fine.size = 3
        tar.addfile(fine, io.BytesIO(b"hi\n"))
        tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isreg() else None)
    return out.getvalue()


def _member(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = link
    member.size = 1 if kind == tarfile.REGTYPE else 0
    return member


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_member("a/../../x", tarfile.REGTYPE), "a path out of its folder"),
        (_member("/x", tarfile.REGTYPE), "an absolute path"),
        (_member("s", tarfile.SYMTYPE, "a/../../x"), "a symlink out of its folder"),
        (_member("h", tarfile.LNKTYPE, "app.py"), "not a file, folder or symlink"),
        (_member("fifo", tarfile.FIFOTYPE), "not a file, folder or symlink"),
    ],
)
def test_a_hostile_archive_is_refused_where_it_is_unpacked_and_leaves_nothing(
    tmp_path: Path, member: tarfile.TarInfo, message: str
) -> None:
    packed = tmp_path / "evil.tar.gz"
    packed.write_bytes(_hostile(member))
    folders = tmp_path / "folders"
    folders.mkdir()
    with pytest.raises(Error, match=message):
        archive.unpack(packed, folders / "web")
    assert os.listdir(folders) == []
    assert sorted(os.listdir(tmp_path)) == ["evil.tar.gz", "folders"]
