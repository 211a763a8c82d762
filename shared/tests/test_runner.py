from __future__ import annotations

import asyncio
import logging

import pytest
from chargebus.runner import log_loop_error


def test_what_asyncio_reports_is_one_log_line_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.ERROR, logger="chargebus"):
            log_loop_error(loop, {"message": "Fatal write error on serial transport", "exception": OSError(5, "EIO")})
    finally:
        loop.close()
    (record,) = caplog.records
    assert record.getMessage() == (
        "event=loop_error message='Fatal write error on serial transport' error=OSError(5, 'EIO')"
    )
    assert record.exc_info is None
