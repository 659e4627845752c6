"""The layering rules hold: the import contracts of pyproject.toml, as `make lint` runs them."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent


def test_the_enabled_import_contracts_hold() -> None:
    # `make imports` runs lint-imports on the contracts the Makefile enables, with this
    # interpreter's tools.
    result = subprocess.run(
        ["make", "--no-print-directory", "-s", "imports", f"BIN={Path(sys.executable).parent}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 broken." in result.stdout


def test_every_policy_and_status_module_is_held_to_be_pure() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (pure,) = [c for c in config["contracts"] if c["id"] == "pure-rules"]
    graph = grimp.build_graph("dployr")
    covered: set[str] = set()
    for expression in pure["source_modules"]:
        if "*" in expression:
            covered |= graph.find_matching_modules(expression)
        else:
            covered |= {expression} | graph.find_descendants(expression)
    rules = {
        module
        for module in graph.modules
        if "policy" in module.rsplit(".", 1)[-1] or module.rsplit(".", 1)[-1] == "status"
    }
    assert rules, "the search finds the pure rules"
    assert rules <= covered, f"add them to the pure-rules contract: {sorted(rules - covered)}"
