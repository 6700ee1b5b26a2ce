"""One flush at a time (shared/batching.py): what a later turn asked is answered after what an
earlier turn asked, however long the earlier flush takes."""

from __future__ import annotations

import asyncio

from shared.batching import FlushPerTurn


class Recorder(FlushPerTurn):
    """Answers each batch after the flush's own delay: the first batch slower than the second,
    as a crowd's big batch (a long pipeline) is slower than the small one after it."""

    def __init__(self, delays: list[float]) -> None:
        super().__init__()
        self.delays = delays
        self.waiting: list[tuple[str, asyncio.Future[None]]] = []
        self.answered: list[str] = []
        self.batches: list[list[str]] = []

    async def ask(self, name: str) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append((name, future))
        self.schedule_flush()
        await future
        self.answered.append(name)

    async def flush(self) -> None:
        batch, self.waiting = self.waiting, []
        self.batches.append([name for name, _ in batch])
        await asyncio.sleep(self.delays[len(self.batches) - 1])
        for _, future in batch:
            future.set_result(None)


async def test_a_later_turns_batch_is_answered_after_an_earlier_slower_one() -> None:
    recorder = Recorder([0.2, 0.0, 0.0])
    first = [asyncio.create_task(recorder.ask(f"early-{n}")) for n in range(3)]
    await asyncio.sleep(0.01)  # the first flush is running
    later = [asyncio.create_task(recorder.ask(f"late-{n}")) for n in range(2)]
    await asyncio.gather(*first, *later)
    assert recorder.answered == ["early-0", "early-1", "early-2", "late-0", "late-1"]
    # What arrived while a flush ran is one batch, flushed once the running one ends.
    assert recorder.batches == [["early-0", "early-1", "early-2"], ["late-0", "late-1"]]


class Failing(Recorder):
    async def flush(self) -> None:
        if not self.batches:
            batch, self.waiting = self.waiting, []
            self.batches.append([name for name, _ in batch])
            raise RuntimeError("the first flush fails")
        await super().flush()


async def test_a_flush_that_raises_does_not_stop_later_ones() -> None:
    recorder = Failing([0.0, 0.0])
    # Its future is never answered (the subclass's flush owns its errors); later asks still are.
    stuck = asyncio.create_task(recorder.ask("lost"))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(recorder.ask("next"), 1)
    assert recorder.answered == ["next"]
    stuck.cancel()

