"""How the shell would run a service's command: pure rules, checked without a process."""

from __future__ import annotations

import pytest

from dployr.engine.os import commands


@pytest.mark.parametrize(
    ("command", "given"),
    [
        ("sleep 100000", "exec sleep 100000"),
        ("python -m http.server $PORT", "exec python -m http.server $PORT"),
        (
            "gunicorn app:app --bind=0.0.0.0:${PORT:-8000}",
            "exec gunicorn app:app --bind=0.0.0.0:${PORT:-8000}",
        ),
        ("./run 'two words' # a comment", "exec ./run 'two words' # a comment"),
        ("PORT=9000 app", "PORT=9000 app"),  # the assignment is for `app` alone
        ("app | tee out", "app | tee out"),
        ("app > out", "app > out"),
        ("app; true", "app; true"),
        ("app && other", "app && other"),
        ("app &", "app &"),
        ("(app)", "(app)"),
        ("echo $(date)", "echo $(date)"),
        ("app `date`", "app `date`"),
        ("app \\\n --flag", "app \\\n --flag"),
        ("cd web", "cd web"),
        ("echo hello", "echo hello"),
        ("exec app", "exec app"),
        ("! app", "! app"),
        ("'cd' web", "'cd' web"),  # still the built-in, quoted
        ("$APP --flag", "$APP --flag"),  # could expand to anything
        ("chdir web", "chdir web"),
        ("-x", "-x"),
        ("   ", "   "),
    ],
)
def test_exec_is_put_before_one_simple_command_only(command: str, given: str) -> None:
    assert commands.shell_command(command) == given


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("sleep 100000", ["sleep", "100000"]),
        (
            "  ./bin/web  --bind=0.0.0.0:8000\tworkers,4 ",
            ["./bin/web", "--bind=0.0.0.0:8000", "workers,4"],
        ),
        ("python -m http.server $PORT", None),  # an expansion: the shell's job
        ("./run 'two words'", None),
        ("ls *.py", None),
        ("~/bin/app", None),
        ("app # a comment", None),
        ("PORT=9000 app", None),
        ("echo hello", None),  # a built-in: the shell's own
        ("app | tee out", None),
        ("./migrate\n./server", None),  # two commands, not one with an argument
        ("./server\r", None),
        ("/bin/echo\xa0hi", None),  # one word to the shell
        ("chdir /tmp", None),
        ("-x", None),
        ("", None),
    ],
)
def test_plain_words_are_run_without_a_shell(command: str, words: list[str] | None) -> None:
    assert commands.plain_words(command) == words
