"""citywatch.logs.setup: what the long-running commands log, and what they must not."""

from __future__ import annotations

import logging

from citywatch import logs


def test_request_urls_which_may_carry_influxdb_passwords_stay_out_of_the_log() -> None:
    logs.setup("INFO")
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
