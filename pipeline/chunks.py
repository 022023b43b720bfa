"""Drawings bound for one shard, packed into a few flat values for the shuffle.

The shuffle carries each drawing's absolute points, not its encoded record: simplified
drawings have integer coordinates in 0..255, which travel as one byte each (float32
otherwise), with the end-of-stroke flags as bits. That is about a quarter of the bytes of
the float32 ink, and what is shuffled is what a local runner keeps in memory and what
Dataflow bills for. The writer recomputes the ink from these exact float32 points.

Drawings read from raw lines also carry each point's time (float32 ms): a bit per drawing
says which ones do, and only their times travel.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

from quickdraw import ink as ink_math

COMPACT = "u1"  # integer coordinates in 0..255
FULL = "<f4"


class ShardDrawings(NamedTuple):
    """Drawings bound for one shard, their points back to back: what a chunk carries."""

    sort_keys: np.ndarray  # (drawings,) uint64, each drawing's place in the shuffle
    words: list[str]
    key_ids: list[str]
    counts: np.ndarray  # (drawings,) int64, points of each drawing
    points: np.ndarray  # (sum(counts), 3) float32, absolute x, y and end_of_stroke
    # Which drawings were read from raw lines, (drawings,) bool, and each point's time,
    # (sum(counts),) float32, NaN in the others. None: no drawing is raw.
    raw: np.ndarray | None = None
    times: np.ndarray | None = None


def concatenate(parts: list[ShardDrawings]) -> ShardDrawings:
    """The drawings of `parts` (at least one), one part after the other."""
    if len(parts) == 1:
        return parts[0]
    return ShardDrawings(
        sort_keys=np.concatenate([part.sort_keys for part in parts]).astype(np.uint64),
        words=list(itertools.chain.from_iterable(part.words for part in parts)),
        key_ids=list(itertools.chain.from_iterable(part.key_ids for part in parts)),
        counts=np.concatenate([part.counts for part in parts]),
        points=np.concatenate([part.points for part in parts]),
        raw=np.concatenate([_raw(part) for part in parts]),
        times=np.concatenate([_times(part) for part in parts]),
    )


def _raw(drawings: ShardDrawings) -> np.ndarray:
    if drawings.raw is None:
        return np.zeros(len(drawings.counts), dtype=bool)
    return np.asarray(drawings.raw, dtype=bool)


def _times(drawings: ShardDrawings) -> np.ndarray:
    if drawings.times is None:
        return np.full(len(drawings.points), np.nan, dtype=np.float32)
    return np.asarray(drawings.times, dtype=np.float32)


def coordinate_dtype(points: np.ndarray) -> str:
    """The smallest dtype that holds these float32 coordinates exactly."""
    coordinates = points[:, :2]
    if not coordinates.size or (
        coordinates.min() >= 0
        and coordinates.max() <= 255
        and np.array_equal(coordinates, np.floor(coordinates))
    ):
        return COMPACT
    return FULL


def _strings(values: list[str]) -> tuple[bytes, bytes]:
    encoded = [value.encode("utf-8") for value in values]
    return b"".join(encoded), np.array([len(v) for v in encoded], dtype="<u4").tobytes()


def _unstrings(blob: bytes, lengths: bytes) -> list[str]:
    ends = np.cumsum(np.frombuffer(lengths, dtype="<u4")).tolist()
    starts = [0, *ends[:-1]]
    return [blob[start:end].decode("utf-8") for start, end in zip(starts, ends)]


def pack(drawings: ShardDrawings) -> tuple:
    """Packs drawings into a tuple of bytes (and the coordinates' dtype) for the shuffle;
    only the times of raw drawings travel."""
    counts, points = drawings.counts, drawings.points
    dtype = coordinate_dtype(points)
    word_blob, word_lengths = _strings(drawings.words)
    key_blob, key_lengths = _strings(drawings.key_ids)
    raw = _raw(drawings)
    if not raw.any():
        raw_bits, raw_times = b"", b""
    else:
        raw_bits = np.packbits(raw).tobytes()
        raw_times = _times(drawings)[np.repeat(raw, counts)].astype("<f4").tobytes()
    return (
        np.asarray(drawings.sort_keys, dtype="<u8").tobytes(),
        word_blob,
        word_lengths,
        key_blob,
        key_lengths,
        np.asarray(counts, dtype="<u4").tobytes(),
        dtype,
        np.ascontiguousarray(points[:, :2]).astype(dtype).tobytes(),
        np.packbits(points[:, ink_math.END_OF_STROKE].astype(bool)).tobytes(),
        raw_bits,
        raw_times,
    )


EMPTY = pack(
    ShardDrawings(
        np.zeros(0, np.uint64), [], [], np.zeros(0, np.int64), np.zeros((0, 3), np.float32)
    )
)


def unpack(chunk: tuple) -> ShardDrawings:
    """The inverse of `pack`, with float32 points and the times of every drawing."""
    sort_keys, word_blob, word_lengths, key_blob, key_lengths, counts, dtype, xy, eos = chunk[:9]
    raw_bits, raw_times = chunk[9:]
    counts = np.frombuffer(counts, dtype="<u4").astype(np.int64)
    total = int(counts.sum())
    points = np.empty((total, 3), dtype=np.float32)
    points[:, :2] = np.frombuffer(xy, dtype=dtype).reshape(total, 2)
    points[:, ink_math.END_OF_STROKE] = np.unpackbits(np.frombuffer(eos, np.uint8))[:total]
    raw = np.unpackbits(np.frombuffer(raw_bits, np.uint8))[: len(counts)].astype(bool)
    raw = np.pad(raw, (0, len(counts) - len(raw)))
    times = np.full(total, np.nan, dtype=np.float32)
    times[np.repeat(raw, counts)] = np.frombuffer(raw_times, dtype="<f4")
    return ShardDrawings(
        sort_keys=np.frombuffer(sort_keys, dtype="<u8").astype(np.uint64),
        words=_unstrings(word_blob, word_lengths),
        key_ids=_unstrings(key_blob, key_lengths),
        counts=counts,
        points=points,
        raw=raw,
        times=times,
    )
