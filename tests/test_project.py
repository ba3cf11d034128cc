"""Checks on the project itself: the README's commands, CI, the demo."""

from __future__ import annotations

import re
from pathlib import Path

import pop3core
from pop3core.__main__ import run

ROOT = Path(__file__).resolve().parent.parent


def quickstart_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quickstart_has_exactly_two_commands() -> None:
    main_job, tests = quickstart_commands()
    assert "pytest" not in main_job
    assert tests.endswith("pytest")


def test_the_main_job_is_the_blocking_demo() -> None:
    main_job, _ = quickstart_commands()
    assert main_job == "python3 -m pip install -e . && python3 -m pop3_blocking demo"


def test_ci_runs_the_readme_test_command() -> None:
    _, tests = quickstart_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"TEST_COMMAND='{tests}'" in ci
    assert 'bash -c "$TEST_COMMAND"' in ci


def test_demo_session_runs_to_the_end() -> None:
    transcript = run()
    assert transcript[0] == "S: +OK POP3 server ready"
    assert "C: PASS ******" in transcript
    assert not any("secret" in line for line in transcript)
    assert "S: ..a message whose first octet is a dot" in transcript
    assert transcript[-1] == "client state CLOSED, server state CLOSED"


def test_public_api_is_flat_and_complete() -> None:
    exported = set(pop3core.__all__)
    assert len(exported) == len(pop3core.__all__)
    for name in exported:
        assert hasattr(pop3core, name), name
    public = {n for n in dir(pop3core) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(pop3core, n)).__name__ == "module"}
    assert public - modules <= exported, (public - modules) - exported
