"""What a user sees when podman is missing: one line saying what to install."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import clean_env, finish, free_port, run_cli, start_up


async def test_an_image_deploy_without_podman_says_what_to_install(tmp_path: Path) -> None:
    bare = tmp_path / "bin"  # a PATH where no podman is found
    bare.mkdir()
    env = clean_env(DPLOYR_HOME=str(tmp_path / "data"), PATH=str(bare))
    process, lines = await start_up(tmp_path / "data", env=env)
    try:
        assert " is up: " in lines[0], lines
        result = await run_cli(
            "deploy", "--name", "web", "--image", "registry.example/team/api:1.4",
            "--port", str(free_port()), env=env,
        )  # fmt: skip
        assert result.one_line_error() == (
            "error: deploy 1 of web failed: podman is not installed: container services need"
            " it (on Debian: apt-get install podman runc)"
        )
    finally:
        process.terminate()
        code, _ = await finish(process)
    assert code == 0
