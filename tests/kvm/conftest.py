"""Real guests need QEMU and libvirt's QEMU driver: ``make test`` installs them and sets
CUMULO_REAL_GUESTS=1, so there a missing piece fails the run; a bare ``pytest`` without them skips."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import guest_template, missing_tools


@pytest.fixture(scope="session")
def template() -> Iterator[Path]:
    missing = missing_tools()
    if missing:
        message = f"real guests need {', '.join(missing)} (make test installs them)"
        if os.environ.get("CUMULO_REAL_GUESTS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    yield guest_template()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Keep each phase's report on the test item, so a fixture can tell whether its test failed."""
    report: pytest.TestReport = yield
    setattr(item, f"report_{report.when}", report)
    return report
