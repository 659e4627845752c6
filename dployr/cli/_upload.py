"""A local folder deployed where the daemon cannot read it: packed, then uploaded.

``dployr deploy --remote .`` sends the folder's path when the daemon runs on this machine
and the service goes to the daemon's own instance: the daemon reads the folder itself.
Otherwise (``--server``, or the service goes to, or is on, another instance of the
cluster, or is new and the daemon's own instance takes no new services) the CLI packs the
folder into a ``.tar.gz`` (dployr/archive.py: ``.git`` left out, as a folder deploy leaves
it out), streams it to ``POST /api/v1/uploads`` showing the bytes sent (on stdout, with
the deploy's other steps), and the deploy names the upload (``upload:<id>``) as its
source.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import asyncclick as click
import trio

from dployr import archive
from dployr.cli.client import ApiError, Client
from dployr.errors import DployrError


def local_folder(remote: str, base: Path) -> Path | None:
    """The folder ``remote`` names on this machine, or None (a URL, or no folder here)."""
    colon, slash = remote.find(":"), remote.find("/")
    if "://" in remote or (colon != -1 and (slash == -1 or colon < slash)):
        return None  # a URL or scp-style host:path (git's rule)
    path = (base / Path(remote).expanduser()).resolve()
    return path if path.is_dir() else None


async def needs_upload(client: Client, name: str, instance: str | None, local: bool) -> bool:
    """Whether a local folder must be uploaded to reach the instance that builds it (see
    the module): False when the daemon is on this machine and builds it on its own
    instance, or cannot deploy there at all (it then says why). A new service naming no
    instance goes to the daemon's own, unless that takes no new services (``dployr up
    --no-local-services``: then to an agent)."""
    if not local:
        return True
    if instance is None:
        try:
            instance = (await client.service_info(name)).instance
        except ApiError as error:
            if error.status != 404:
                raise
    views = await client.instances()
    own = next((v for v in views if v.address is None and v.state == "connected"), None)
    if instance is None:  # a new service: the daemon's own instance, if it takes any
        return own is not None and not own.takes_services
    if own is not None and instance == own.name:
        return False
    return any(v.name == instance and v.state == "connected" for v in views)


async def upload(client: Client, folder: Path, *, quiet: bool) -> str:
    """Pack ``folder``, upload it showing the progress; the source naming the upload."""
    with tempfile.TemporaryDirectory(prefix="dployr-upload-") as temporary:
        packed = Path(temporary) / "folder.tar.gz"
        count = await trio.to_thread.run_sync(_pack, folder, packed)
        size = (await trio.Path(packed).stat()).st_size
        progress = _Progress(size, quiet=quiet)
        progress.say(f"uploading {folder} ({count} entries, {archive.describe_size(size)} packed)")
        try:
            answer = await client.upload(packed, progress.sent)
        except ApiError as error:
            progress.end()
            if error.status == 413:
                raise DployrError(f"the folder {folder} is too large to upload: {error}") from None
            raise
        progress.end()
    source = answer.get("source") if isinstance(answer, dict) else None
    if not isinstance(source, str) or not source.startswith(archive.UPLOAD_PREFIX):
        raise DployrError("the daemon's answer to the upload names no upload")
    progress.say(f"uploaded {archive.describe_size(size)}")
    return source


def _pack(folder: Path, into: Path) -> int:
    with into.open("xb") as file:  # Ctrl-C stops it between two entries
        return archive.pack(folder, file, between=trio.from_thread.check_cancelled)


class _Progress:
    """The bytes sent: one line rewritten on a terminal, else a line at each quarter."""

    def __init__(self, size: int, *, quiet: bool) -> None:
        self._size = max(size, 1)
        self._quiet = quiet
        self._tty = sys.stdout.isatty()
        self._shown = -1
        self._open = False

    def say(self, line: str) -> None:
        if not self._quiet:
            click.echo(line)

    def sent(self, count: int) -> None:
        percent = min(100, count * 100 // self._size)
        step = percent if self._tty else percent // 25 * 25
        if self._quiet or step == self._shown:
            return
        self._shown = step
        text = (
            f"  sent {archive.describe_size(count)} of {archive.describe_size(self._size)} "
            f"({percent}%)"
        )
        if self._tty:
            click.echo("\r" + text, nl=False)
            self._open = True
        else:
            click.echo(text)

    def end(self) -> None:
        if self._open:
            click.echo("")
            self._open = False
