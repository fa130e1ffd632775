"""Shared pytest configuration: integration tests are marked automatically by folder."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath) or "/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
