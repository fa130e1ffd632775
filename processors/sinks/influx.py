"""The InfluxDB sink: batches of line protocol (processors.sinks.lines) -> ``/api/v2/write``.

``write`` returns only once InfluxDB confirmed the batch; ``write_until_done`` retries with
backoff and sets aside the lines InfluxDB rejects as such, for the dead-letter topic.

Example:
    >>> from citywatch.settings import Settings
    >>> sink = InfluxSink(Settings())  # doctest: +SKIP
    >>> await sink.write_until_done(["bin,device_id=b1 fill_ratio=0.5 1"])  # doctest: +SKIP
    []
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.domain.write_precision import WritePrecision

from citywatch import credentials
from citywatch.backoff import retry
from citywatch.settings import Settings

log = logging.getLogger(__name__)


class InfluxWriteError(RuntimeError):
    """InfluxDB refused or did not answer a batch."""


class InfluxRejected(InfluxWriteError):
    """InfluxDB refused the data itself (HTTP 400: a field type conflict, a point outside the
    retention policy...): the same lines will never be accepted, retrying cannot help."""


class InfluxSink:
    """Writes batches of lines; ``write`` returns only once InfluxDB confirmed them."""

    def __init__(self, settings: Settings) -> None:
        i = settings.influx
        self.s = settings
        self.bucket = i.bucket
        self.client = InfluxDBClientAsync(
            url=i.url,
            token=f"{i.admin_user}:{credentials.password(settings, 'influx')}",
            org="-",
            timeout=30_000,
        )
        self.api = self.client.write_api()

    async def write(self, lines: Sequence[str], *, bucket: str | None = None) -> None:
        if not lines:
            return
        try:
            ok = await self.api.write(
                bucket=bucket or self.bucket,
                record="\n".join(lines),
                write_precision=WritePrecision.NS,  # type: ignore[arg-type]
            )
        except Exception as exc:
            if getattr(exc, "status", None) == 400:
                why = getattr(exc, "headers", {}).get("X-Influxdb-Error") or str(exc)
                raise InfluxRejected(f"InfluxDB rejected {len(lines)} lines: {why}") from exc
            raise InfluxWriteError(f"InfluxDB write of {len(lines)} lines failed: {exc}") from exc
        if ok is False:
            raise InfluxWriteError(f"InfluxDB did not confirm {len(lines)} lines")

    async def write_until_done(
        self, lines: Sequence[str], stop: asyncio.Event | None = None, *, bucket: str | None = None
    ) -> list[tuple[str, str]]:
        """Retry with capped exponential backoff until InfluxDB confirms (or stop is set).

        Lines InfluxDB rejects as such (HTTP 400) are found by halving the batch (a partial
        write keeps the good points, so rewriting them is harmless) and returned with the
        reason, for the dead-letter topic, instead of blocking the stream forever.
        """

        async def attempt() -> list[tuple[str, str]]:
            try:
                await self.write(lines, bucket=bucket)
                return []
            except InfluxRejected as exc:
                if len(lines) == 1:
                    return [(lines[0], str(exc))]
                half = len(lines) // 2
                bad = await self.write_until_done(lines[:half], stop, bucket=bucket)
                return bad + await self.write_until_done(lines[half:], stop, bucket=bucket)

        # A rejection is handled inside the attempt; any other write error means InfluxDB is
        # away or overloaded: wait and write the same lines again.
        return await retry(attempt, InfluxWriteError, what="InfluxDB write", log=log, stop=stop)

    async def close(self) -> None:
        await self.client.close()  # type: ignore[no-untyped-call]
