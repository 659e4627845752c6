"""How the shell would run a service's command: pure rules, no process is started here.

A command is given to ``/bin/sh -c``; :func:`shell_command` puts ``exec`` before one simple
command so the shell becomes the program, and :func:`plain_words` finds a command the
shell would only split into words, so the runner can start the program itself
(:mod:`dployr.engine.os.launcher`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_OPERATORS = frozenset(";&|<>()`\\\n")
"""Characters that make a command more than one simple command (a list, a pipeline, a
subshell, a redirection, a command substitution, an escaped line break)."""
_BLANKS = re.compile(r"[ \t]+")
"""What the shell splits words on (a line break ends a command)."""
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
"""A word the shell would pass on as it is: no quoting, expansion, globbing or comment."""
_RESERVED_WORDS = "! { } if then else elif fi case esac for while until do done in"
_BUILT_INS = (  # dash's
    ". : [ alias bg break cd chdir command continue echo eval exec exit export false fg"
    " getopts hash jobs kill local printf pwd read readonly return set shift test times trap"
    " true type ulimit umask unalias unset wait"
)
_NOT_PROGRAMS = frozenset(f"{_RESERVED_WORDS} {_BUILT_INS}".split())
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""An environment variable the shell passes on (it drops any other name)."""


def _words(command: str) -> list[str]:
    """``command`` split as the shell splits a simple command into words."""
    stripped = command.strip(" \t")
    return _BLANKS.split(stripped) if stripped else []


def _runs_a_program(first: str) -> bool:
    """Whether a command whose first word is ``first`` (as written) runs a program: a plain
    word that is no reserved word, built-in, assignment or option."""
    return (
        _PLAIN_WORD.fullmatch(first) is not None
        and first not in _NOT_PROGRAMS
        and "=" not in first
        and not first.startswith("-")
    )


def shell_command(command: str) -> str:
    """What the shell is given: ``exec <command>`` when ``command`` is one simple command
    that runs a program, else ``command`` as it is.

    ``exec`` makes the shell become the program instead of waiting for it: the same
    program, arguments and expansions, but the service's pid is the program's (and the
    group's), signals reach it directly, and no idle shell sits in every service. (dash,
    Debian's ``/bin/sh``, forks even for the last command of ``sh -c``.) The exit status
    is the program's, except that a program killed by a signal is reported as killed by
    it, where the shell reported 128 + the signal. Anything else (pipelines, lists,
    redirections, several lines, built-ins, leading assignments, a quoted or expanded
    first word) runs as written.
    """
    words = _words(command)
    if not words or _OPERATORS.intersection(command) or not _runs_a_program(words[0]):
        return command
    return f"exec {command}"


def plain_words(command: str) -> list[str] | None:
    """``command`` as a program and its arguments, if the shell would only split it into
    words (it runs a program, and no word holds a character the shell treats specially);
    else None."""
    words = _words(command)
    if (
        not words
        or not all(_PLAIN_WORD.fullmatch(word) for word in words)
        or not _runs_a_program(words[0])
    ):
        return None
    return words


def shell_argv(command: str) -> list[str]:
    return ["/bin/sh", "-c", shell_command(command)]


def exported(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``env`` the shell would pass on to a program (it drops the rest)."""
    return {name: value for name, value in env.items() if _NAME.fullmatch(name)}
