"""Fixtures of the API tests: the API on a real listener (web_support.make_api)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from seeder_helpers import Shop
from testkit import CanaryRows, MakeConfig, OpenRuntime
from web_support import ApiUnderTest, make_api


@pytest.fixture
def shop_rows() -> int:
    """A small shop: the plan route only needs a table to plan into."""
    return 400


@pytest.fixture
async def api(open_test_runtime: OpenRuntime, make_config: MakeConfig, canary_rows: CanaryRows,
              shop: Shop) -> AsyncIterator[ApiUnderTest]:
    """A listener serving the API, with two canaries read (two incidents paged to a local PagerDuty)."""
    async with make_api(open_test_runtime, make_config, canary_rows, shop) as under:
        yield under
