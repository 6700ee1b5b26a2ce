"""Group commit: rows that arrive while their stream's last transaction runs are written
together in the next one.

At a sale's opening every winning request writes a row, and a transaction per row costs a
round trip, a commit and the session's own work each; the rows then queue on the pool (or on a
hot row) while their callers' next statements wait for the event loop. A writer here gives
each stream (a product, say) one transaction at a time: a lone row is written at once, alone;
a crowd pays one transaction per batch of up to `max_batch`.

A batch is all or nothing. When it fails in a way one of its rows may have caused (a guard, a
duplicate key) or that a smaller transaction may not meet (a deadlock), each row is written in
a transaction of its own, which gives each caller the answer a transaction of its own would
have. Any other failure is every caller's answer.

A subclass says how: `_stream` (which rows queue together), `_write_together`, `_write_alone`
and `_alone_after` (which failures of a batch send its rows one by one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Generic, TypeVar

from sqlalchemy.exc import DBAPIError

from shared.repository import error_code

Row = TypeVar("Row")

# MySQL's deadlock and lock-wait-timeout errors: a batch cut short by one is written row by row.
DEADLOCK_OR_LOCK_WAIT = {1213, 1205}


class WriterStopped(Exception):
    """The process stopped before the row was written."""


class GroupCommit(Generic[Row]):
    def __init__(self, *, max_batch: int) -> None:
        self.max_batch = max_batch
        self._waiting: dict[Hashable, list[tuple[Row, asyncio.Future[None]]]] = {}
        self._writers: dict[Hashable, asyncio.Task[None]] = {}

    # What a subclass says

    def _stream(self, row: Row) -> Hashable:
        raise NotImplementedError

    async def _write_together(self, rows: list[Row]) -> None:
        raise NotImplementedError

    async def _write_alone(self, row: Row) -> None:
        raise NotImplementedError

    def _alone_after(self, error: Exception) -> bool:
        """Whether a batch that failed with `error` is written again row by row."""
        return isinstance(error, DBAPIError) and error_code(error) in DEADLOCK_OR_LOCK_WAIT

    # The writer

    async def write(self, row: Row) -> None:
        """Returns once the row is committed. Raises what a transaction of its own would have
        raised (`_write_alone`'s errors), or WriterStopped."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stream = self._stream(row)
        self._waiting.setdefault(stream, []).append((row, done))
        if stream not in self._writers:
            self._writers[stream] = asyncio.create_task(self._write_waiting(stream))
        # Shielded: a caller that goes away leaves its row to be written with the rest. Its
        # caller has acted on it already (units held for it): whether it lands must not
        # depend on who is still waiting for the answer.
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            done.add_done_callback(_forget_outcome)
            raise

    async def drain(self, timeout: float) -> None:
        """Waits (at most `timeout`) for the rows already handed in to be written: for a stop,
        before the pool they are written with is closed."""
        if self._writers:
            await asyncio.wait(list(self._writers.values()), timeout=timeout)

    async def _write_waiting(self, stream: Hashable) -> None:
        batch: list[tuple[Row, asyncio.Future[None]]] = []
        try:
            while waiting := self._waiting.get(stream):
                batch = waiting[:self.max_batch]
                del waiting[:self.max_batch]
                await self._write_batch(batch)
                batch = []
        except BaseException:
            # Cancelled (the process is stopping): nobody may wait for an answer forever.
            for _, done in batch + self._waiting.get(stream, []):
                _settle(done, WriterStopped())
            raise
        finally:
            # Reached with nothing waiting and no await since the check: a row that arrives
            # next starts a writer of its own.
            self._waiting.pop(stream, None)
            del self._writers[stream]

    async def _write_batch(self, batch: list[tuple[Row, asyncio.Future[None]]]) -> None:
        if len(batch) > 1:
            try:
                await self._write_together([row for row, _ in batch])
            except Exception as error:
                if not self._alone_after(error):
                    for _, done in batch:
                        _settle(done, error)
                    return
            else:
                for _, done in batch:
                    _settle(done, None)
                return
        for row, done in batch:
            try:
                await self._write_alone(row)
            except Exception as error:
                _settle(done, error)
            else:
                _settle(done, None)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():  # cancelled, or answered before a stop settles the whole batch again
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def _forget_outcome(done: asyncio.Future[None]) -> None:
    if not done.cancelled():
        done.exception()  # retrieved: its caller has gone, and asyncio would log it as lost
