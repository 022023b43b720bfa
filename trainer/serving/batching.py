"""Concurrent requests' drawings classified together, in one model call, off the event loop.

As TF Serving's batching does, requests that arrive together share a call: one call for 8
drawings costs far less than 8 calls for one, so throughput grows with the number of clients.
No request waits for company, though. While the model is idle a request's drawings go to it
at once, alone; those that arrive while it is busy queue up, and the next call takes all of
them (up to `max_batch_size` drawings). A lone client therefore sees the model's own latency,
and under load each call takes whatever the previous call's time let gather.

The model runs on a thread of its own: TensorFlow releases the GIL while it computes, so the
event loop goes on reading and parsing the next requests meanwhile.
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

    def __init__(self, classify: Classify, max_batch_size: int):
        if max_batch_size < 1:
            raise ValueError(f"--max_batch_size must be at least 1, got {max_batch_size}")
        self._classify = classify
        self.max_batch_size = max_batch_size
        self._waiting: collections.deque = collections.deque()  # (drawings, future)
        self._draining: asyncio.Task | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")
        # How many model calls took how many drawings: the evidence that batching happens.
        self.calls_by_size: collections.Counter = collections.Counter()

    async def classify(self, drawings: list[np.ndarray]) -> np.ndarray:
        """(drawings, classes) probabilities of these drawings, once a model call has run."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((drawings, future))
        if self._draining is None:
            self._draining = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        """Runs model calls while requests wait, each call on all that waited."""
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                batch = self._take()
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
