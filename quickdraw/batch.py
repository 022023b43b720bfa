"""Drawings of one file, their points stored back to back: what `quickdraw.drawings`
returns for a batch of lines, raw or simplified."""

from __future__ import annotations

import dataclasses

import numpy as np

from quickdraw import ink as ink_math


def starts_of(counts: np.ndarray) -> np.ndarray:
    """Where each of back-to-back runs of `counts` rows starts."""
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return starts


def points_from_coordinates(
    x_array: np.ndarray, y_array: np.ndarray, stroke_lengths: list
) -> np.ndarray:
    """(total points, 3) float32: x, y and end_of_stroke on each stroke's last point."""
    points = np.zeros((len(x_array), 3), dtype=np.float32)
    if len(x_array):
        points[:, ink_math.X] = x_array
        points[:, ink_math.Y] = y_array
        points[np.cumsum(stroke_lengths) - 1, ink_math.END_OF_STROKE] = 1
    return points


@dataclasses.dataclass
class DrawingBatch:
    """Good drawings of one file, in line order, with their points stored back to back.

    Drawing i has `counts[i]` absolute points (x, y, end_of_stroke) starting at row
    `offsets[i]` of `points`; its ink (`ink_of`) has one row fewer.
    """

    line_numbers: np.ndarray  # (drawings,) int64, 1-based line numbers in the file
    words: list[str]
    key_ids: list[str]
    recognized: np.ndarray  # (drawings,) bool
    counts: np.ndarray  # (drawings,) int64, points of each drawing, >= 2
    points: np.ndarray  # (sum(counts), 3) float32
    # Which drawings came from raw lines, (drawings,) bool, and each point's time in ms since
    # its drawing's first point, (sum(counts),) float32, NaN in drawings not from raw lines.
    raw: np.ndarray | None = None
    times: np.ndarray | None = None

    def __post_init__(self):
        if self.raw is None:
            self.raw = np.zeros(len(self.counts), dtype=bool)
        if self.times is None:
            self.times = np.full(len(self.points), np.nan, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.words)

    @property
    def lengths(self) -> np.ndarray:
        """Rows of ink of each drawing."""
        return self.counts - 1

    @property
    def offsets(self) -> np.ndarray:
        return starts_of(self.counts)

    def points_of(self, index: int) -> np.ndarray:
        start = int(self.offsets[index])
        return self.points[start : start + int(self.counts[index])]

    def ink_of(self, index: int) -> np.ndarray:
        return ink_math.deltas(self.points_of(index))

    def log_aspect_of(self, index: int) -> np.float32:
        return ink_math.log_aspect(self.points_of(index))

    def times_of(self, index: int) -> np.ndarray | None:
        """A raw drawing's point times (ms since its first point); None for the others."""
        if not self.raw[index]:
            return None
        start = int(self.offsets[index])
        return self.times[start : start + int(self.counts[index])]

    def select(self, mask: np.ndarray) -> DrawingBatch:
        """The drawings where `mask` is true, in order."""
        picked = np.flatnonzero(mask)
        rows = np.repeat(mask, self.counts)
        return DrawingBatch(
            line_numbers=self.line_numbers[mask],
            words=[self.words[i] for i in picked],
            key_ids=[self.key_ids[i] for i in picked],
            recognized=self.recognized[mask],
            counts=self.counts[mask],
            points=self.points[rows],
            raw=self.raw[mask],
            times=self.times[rows],
        )

    def take(self, picked: np.ndarray) -> DrawingBatch:
        """The drawings at the indices `picked`, in that order."""
        counts = self.counts[picked]
        rows = np.repeat(self.offsets[picked] - starts_of(counts), counts) + np.arange(counts.sum())
        return DrawingBatch(
            line_numbers=self.line_numbers[picked],
            words=[self.words[i] for i in picked],
            key_ids=[self.key_ids[i] for i in picked],
            recognized=self.recognized[picked],
            counts=self.counts[picked],
            points=self.points[rows],
            raw=self.raw[picked],
            times=self.times[rows],
        )

    @staticmethod
    def concatenate(batches: list[DrawingBatch]) -> DrawingBatch:
        """The drawings of `batches`, one batch after the other."""
        return DrawingBatch(
            line_numbers=np.concatenate([b.line_numbers for b in batches]),
            words=[word for b in batches for word in b.words],
            key_ids=[key_id for b in batches for key_id in b.key_ids],
            recognized=np.concatenate([b.recognized for b in batches]),
            counts=np.concatenate([b.counts for b in batches]),
            points=np.concatenate([b.points for b in batches]),
            raw=np.concatenate([b.raw for b in batches]),
            times=np.concatenate([b.times for b in batches]),
        )


def in_line_order(batches: list[DrawingBatch]) -> DrawingBatch:
    """The drawings of batches of the same lines, merged in line order."""
    filled = [batch for batch in batches if len(batch)]
    if len(filled) <= 1:
        return filled[0] if filled else batches[0]
    batch = DrawingBatch.concatenate(filled)
    return batch.take(np.argsort(batch.line_numbers, kind="stable"))
