"""Concurrent requests' drawings classified together, in one model call, off the event loop.

As TF Serving's batching does, requests that arrive together share a call: one call for 8
drawings costs far less than 8 calls for one, so throughput grows with the number of clients.
A lone request waits for no company: while the model is idle a request's drawings go to it
at once, so a lone client sees the model's own latency. Requests that arrive while it is busy
queue up, and the next call takes all of them (up to `max_batch_size` drawings).

Under load, taking only those would split the clients in two groups that take turns: the
clients of one call send their next requests while the other group's call runs, and wait for
it. So after a call of several requests (or with requests already queued, that is, with
several clients about), the next call first waits up to `wait_ms` for the clients it just
answered to come back, and stops waiting as soon as they have; also when nobody queued while
the call ran, as when all the clients fit in it. Measured with 8 clients of one drawing,
nearly every call takes 8 drawings (see docs/serving.md).

Where several clients are about, the model runs on a thread of its own: TensorFlow releases
the GIL while it computes, so the event loop goes on reading and parsing the next requests
meanwhile. A lone drawing (one request of one drawing, with nothing queued or running) runs
on the event loop itself, without a task or a future around it: there is nothing to read
meanwhile, and the trip to the thread and back costs about 0.3 ms, a tenth of a one-drawing
call. A lone request of many drawings still goes to the thread, so that `/health` and new
requests are not held up for all of them. A lone drawing waits one loop turn before it runs,
and the drain starts one loop turn after the request that wakes it, so requests that arrive
together still share a call.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
from collections.abc import Callable

import numpy as np

# (drawings' absolute points) -> (drawings, classes) probabilities, blocking.
Classify = Callable[[list[np.ndarray]], np.ndarray]


class Batcher:
    """Gathers the drawings of concurrent `classify` calls into model calls."""

    def __init__(self, classify: Classify, max_batch_size: int, wait_ms: float = 0.0):
        if max_batch_size < 1:
            raise ValueError(f"--max_batch_size must be at least 1, got {max_batch_size}")
        if wait_ms < 0:
            raise ValueError(f"--batch_wait_ms must be at least 0, got {wait_ms}")
        self._classify = classify
        self.max_batch_size = max_batch_size
        self.wait_s = wait_ms / 1000
        self._waiting: collections.deque = collections.deque()  # (drawings, future)
        self._arrived = asyncio.Event()
        self._draining: asyncio.Task | None = None
        self._lone = False  # a lone drawing is about to run on the event loop
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")
        # How many model calls took how many drawings: the evidence that batching happens.
        self.calls_by_size: collections.Counter = collections.Counter()

    async def classify(self, drawings: list[np.ndarray]) -> np.ndarray:
        """(drawings, classes) probabilities of these drawings, once a model call has run."""
        if len(drawings) == 1 and self._idle():
            # Maybe a lone drawing: after one loop turn, in which requests that arrived
            # with it would queue, it runs here, without a task and a future around it.
            self._lone = True
            try:
                await asyncio.sleep(0)
            finally:  # a request cancelled meanwhile leaves the batcher as it found it
                self._lone = False
            if self._idle():
                self.calls_by_size[1] += 1
                return self._classify(drawings)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((drawings, future))
        self._arrived.set()
        if self._draining is None:
            self._draining = loop.create_task(self._drain())
        return await future

    def _idle(self) -> bool:
        return self._draining is None and not self._waiting and not self._lone

    async def _drain(self) -> None:
        """Runs model calls while requests wait, each call on all that waited; after a call
        of several, waits up to wait_s for its clients to come back."""
        loop = asyncio.get_running_loop()
        answered = 0  # requests of the last call
        try:
            while True:
                clients = answered + len(self._waiting)
                if clients > 1 and self.wait_s:
                    await self._gather(clients)
                if not self._waiting:
                    return  # nobody queued, and the clients of the last call did not come back
                batch = self._take()
                answered = len(batch)
                points = [drawing for drawings, _ in batch for drawing in drawings]
                self.calls_by_size[len(points)] += 1
                try:
                    probabilities = await loop.run_in_executor(self._thread, self._classify, points)
                except Exception as error:  # every request of the call learns of it
                    logging.exception("the model failed on a batch of %d drawings", len(points))
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                start = 0
                for drawings, future in batch:
                    if not future.done():  # a client that went away leaves a cancelled future
                        future.set_result(probabilities[start : start + len(drawings)])
                    start += len(drawings)
        finally:
            self._draining = None

    async def _gather(self, clients: int) -> None:
        """Waits until `clients` requests are queued, or wait_s has passed."""
        deadline = asyncio.get_running_loop().time() + self.wait_s
        while len(self._waiting) < clients:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _take(self) -> list:
        """The waiting requests, oldest first, up to max_batch_size drawings (at least one
        request, however many drawings it holds)."""
        batch = [self._waiting.popleft()]
        size = len(batch[0][0])
        while self._waiting and size + len(self._waiting[0][0]) <= self.max_batch_size:
            drawings, future = self._waiting.popleft()
            batch.append((drawings, future))
            size += len(drawings)
        return batch

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
