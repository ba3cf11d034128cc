"""pytest wiring for the pop3core benchmarks (the harness itself is `_harness`).

Run with ``pytest benchmarks`` (the issue's sizes) or ``pytest benchmarks --quick``
(or ``POP3_BENCH_QUICK=1``) for CI. Benchmark files are named ``bench_*.py`` and
collected by `pytest_collect_file` below, so the main suite (``testpaths =
["tests"]``, files ``test_*.py``) never picks them up.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from _harness import Corpus, Listing, Measure, Settings, corpus, make_listing, settings_from
from _harness import write_summary as _write_summary


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--quick",
        action="store_true",
        default=False,
        help="pop3core benchmarks: small sizes and few rounds, for CI (or POP3_BENCH_QUICK=1)",
    )
    parser.addoption(
        "--bench-rounds",
        type=int,
        default=None,
        metavar="N",
        help="pop3core benchmarks: timed rounds per implementation (default 7, quick 3)",
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    # pytest itself collects a file named on the command line, whatever its name.
    if (
        file_path.suffix == ".py"
        and file_path.name.startswith("bench_")
        and not parent.session.isinitpath(file_path)
    ):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture(scope="session")
def settings(pytestconfig: pytest.Config) -> Settings:
    return settings_from(pytestconfig)


@pytest.fixture(scope="session")
def corpora(settings: Settings) -> Callable[[str], Corpus]:
    """Look a message corpus up by name; each is generated once per session."""

    def get(name: str) -> Corpus:
        return corpus(name, settings.message_size)

    return get


@pytest.fixture(scope="session")
def listing(settings: Settings) -> Listing:
    return make_listing(settings.listing_entries)


@pytest.fixture
def measure(benchmark: BenchmarkFixture, settings: Settings) -> Measure:
    return Measure(benchmark, settings)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    _write_summary(terminalreporter, config)
