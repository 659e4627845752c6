"""Container images for the tests, made here: nothing is downloaded.

A registry on loopback (Debian's ``docker-registry``, with a configuration of its own in
a temporary folder) holds images built in the test run FROM scratch: busybox-static's
``httpd`` serving a version file on ``$PORT``. The images are built once per test process
(each xdist worker has its registry and images).

podman's store is the machine's, shared by every test process and by anyone else on the
machine, so nothing here may touch what another run made:

- every build context holds a file of its own (:func:`image_context`): podman's layer
  cache would otherwise give the same image (one id, several names) to two runs building
  the same files, and one run's clean-up or ``--purge-image`` would remove the other's;
- a test that builds from a Dockerfile names its service with :func:`own_name` (dployr
  tags a build ``localhost/dployr/<service>:<deployment>``, a name every instance on the
  machine shares);
- the clean-up removes this run's images by id (every name they got: tags, pulls by
  digest, the credentials test's second registry).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import attrs
import pytest

from dployr.engine import podman
from tests.cli.conftest import daemon  # noqa: F401 (the CLI tests' daemon fixture)

BUSYBOX = Path("/usr/bin/busybox")
REGISTRY = Path("/usr/bin/docker-registry")
WAIT = 60.0

DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
COPY www /www
ENTRYPOINT ["/bin/busybox", "sh", "-c", "{script}", "sh"]
"""
SERVE = (
    "echo serving $(/bin/busybox cat /www/version) on $PORT;"
    " echo to stderr >&2;"
    " exec /bin/busybox httpd -f -p $PORT -h /www"
)

STUBBORN = "trap '' TERM; exec /bin/busybox httpd -f -p $PORT -h /www"
"""A server that ignores SIGTERM (an ignored signal stays ignored across exec)."""


def podman_cmd(*words: str, capture: bool = False) -> str:
    """Run podman as dployr does (its global options); its stdout."""
    done = subprocess.run(
        podman.argv(*words),
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if capture else None,
        timeout=WAIT,
    )
    return done.stdout.decode()


def image_context(folder: Path, version: str, script: str = SERVE) -> Path:
    """A build context: busybox, a version file, and a Dockerfile running ``script``.

    A file of its own (``www/build``) makes its image this context's alone."""
    (folder / "www").mkdir(parents=True)
    shutil.copy(BUSYBOX, folder / "busybox")
    (folder / "www" / "version").write_text(version + "\n")
    (folder / "www" / "build").write_text(f"{os.environ['TESTS_RUN']} {os.urandom(8).hex()}\n")
    (folder / "Dockerfile").write_text(DOCKERFILE.format(script=script))
    return folder


def own_name(service: str) -> str:
    """A service name no other test run on the machine uses: ``built-3fa9c1``."""
    return f"{service}-{os.urandom(3).hex()}"


@attrs.frozen
class Registry:
    """A registry on loopback and the images pushed to it."""

    host: str
    """``127.0.0.1:PORT``."""
    repo: str
    """The test run's repository on it: ``127.0.0.1:PORT/dployr-tests/web``."""
    digests: dict[str, str]
    """The digest of each version's image (v1, v2, crash, stubborn)."""
    archive: Path
    """v1 as an OCI archive."""

    def push(self, version: str, tag: str) -> None:
        """Point ``tag`` of the repository at ``version``'s image (as ``podman push`` of a
        pulled image would)."""
        pinned = f"{self.repo}@{self.digests[version]}"
        podman_cmd("pull", "--quiet", "--tls-verify=false", pinned)
        podman_cmd("push", "--quiet", "--tls-verify=false", pinned, f"{self.repo}:{tag}")


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A loopback registry holding v1, v2 and a crashing image of the test web app."""
    if shutil.which("podman") is None or not REGISTRY.exists() or not BUSYBOX.exists():
        pytest.fail(f"the image tests need: apt-get install {podman.PACKAGES} {PACKAGES}")
    root = tmp_path_factory.mktemp("registry")
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        "http:\n  addr: 127.0.0.1:0\n"
        "log:\n  level: info\n"
    )
    log = root / "registry.log"
    process = subprocess.Popen(
        [str(REGISTRY), "serve", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    digests: dict[str, str] = {}
    built: list[str] = []  # the ids of this run's images, for the clean-up
    try:
        host = _listening(process, log)
        repo = f"{host}/dployr-tests/web"
        for version, script in (
            ("v1", SERVE),
            ("v2", SERVE),
            ("crash", "echo boom >&2; exit 3"),
            ("stubborn", STUBBORN),
        ):
            context = image_context(root / f"build-{version}", version, script)
            # No layer cache: nothing of another run's build is reused, nothing left behind.
            image_id = podman_cmd(
                "build", "--quiet", "--layers=false", str(context), capture=True
            ).strip()
            built.append(image_id)
            digest_file = root / f"{version}.digest"
            podman_cmd(
                "push", "--quiet", "--tls-verify=false", "--digestfile", str(digest_file),
                image_id, f"{repo}:{version}",
            )  # fmt: skip
            digests[version] = digest_file.read_text().strip()
        archive = root / "v1.oci.tar"
        podman_cmd("save", "--quiet", "--format", "oci-archive", "--output", str(archive),
                   built[0])  # fmt: skip
        # Only the registry holds them now: a deploy pulls them as from any registry.
        podman_cmd("rmi", *built, capture=True)
        yield Registry(host, repo, digests, archive)
    finally:
        process.terminate()
        process.wait(timeout=WAIT)
        # A pull (by tag, by digest, from the archive or the second registry) gives back
        # the same image, with its id: removing the ids removes every name they got.
        if built:
            subprocess.run(
                podman.argv("rmi", "--force", "--ignore", *built),
                check=False, capture_output=True, timeout=WAIT,
            )  # fmt: skip


PACKAGES = "docker-registry busybox-static"


def _drain(stream: IO[bytes], log: Path) -> None:
    with stream, log.open("ab") as out:
        shutil.copyfileobj(stream, out)


def _listening(process: subprocess.Popen[bytes], log: Path) -> str:
    """Read the registry's log until it says where it listens (it picks a free port)."""
    assert process.stderr is not None
    deadline = time.monotonic() + WAIT
    seen = []
    for raw in process.stderr:
        line = raw.decode(errors="replace")
        seen.append(line)
        if "listening on" in line:
            # The rest of its log is drained to a file, so the pipe never fills.
            threading.Thread(target=_drain, args=(process.stderr, log), daemon=True).start()
            # (the thread closes the pipe at its end)
            return line.split("listening on ", 1)[1].split()[0].strip('"')
        assert time.monotonic() < deadline, "".join(seen)
    log.write_text("".join(seen))
    process.stderr.close()
    raise AssertionError(f"the registry did not start: {''.join(seen)}")
