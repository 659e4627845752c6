"""Build args in a blueprint: a table of text, only beside a Dockerfile."""

from __future__ import annotations

from pathlib import Path

import pytest

from dployr import blueprint
from dployr.errors import DployrError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dployr.toml"
    path.write_text('name = "api"\nremote = "https://git.example/api.git"\nport = 8000\n' + text)
    return path


def test_a_blueprint_s_build_args_table_reaches_the_settings(tmp_path: Path) -> None:
    plan = blueprint.load(
        write(tmp_path, 'dockerfile = "Dockerfile"\n[build_args]\nVERSION = "1.4"\nMODE = "prod"\n')
    )
    assert plan.settings.build_args == {"VERSION": "1.4", "MODE": "prod"}
    assert plan.body()["build_args"] == {"VERSION": "1.4", "MODE": "prod"}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('run_cmd = "serve"\n[build_args]\nA = "1"\n', "build args are for an image built from"),
        ('dockerfile = "Dockerfile"\n[build_args]\nA = 1\n', "build_args.A must be text"),
        ('dockerfile = "Dockerfile"\nbuild_args = "A=1"\n', "build_args must be a table"),
        ('dockerfile = "Dockerfile"\n[build_args]\nHOME = "/"\n', "build arg HOME is a name"),
        ('dockerfile = "Dockerfile"\n[build_args]\n"1A" = "x"\n', "invalid environment variable"),
    ],
)
def test_bad_build_args_are_refused_in_one_line(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(DployrError, match=error):
        blueprint.load(write(tmp_path, text))
