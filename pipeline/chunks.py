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

import numpy as np

from quickdraw import ink as ink_math

COMPACT = "u1"  # integer coordinates in 0..255
FULL = "<f4"


def coordinate_dtype(points: np.ndarray) -> str:
    """The smallest dtype that holds these float32 coordinates exactly."""
    coordinates = points[:, :2]
    if (
        coordinates.size
        and coordinates.min() >= 0
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


def pack(
    sort_keys: list[int],
    words: list[str],
    key_ids: list[str],
    counts: np.ndarray,
    points: np.ndarray,
    dtype: str,
    raw: np.ndarray | None = None,
    times: np.ndarray | None = None,
) -> tuple:
    """Packs drawings (their `counts` points stored back to back in `points`); `raw`
    (drawings,) bool marks those whose points' `times` (points,) travel too."""
    word_blob, word_lengths = _strings(words)
    key_blob, key_lengths = _strings(key_ids)
    if raw is None or not np.any(raw):
        raw_bits, raw_times = b"", b""
    else:
        raw_bits = np.packbits(np.asarray(raw, dtype=bool)).tobytes()
        raw_times = np.asarray(times, dtype="<f4")[np.repeat(raw, counts)].tobytes()
    return (
        np.array(sort_keys, dtype="<u8").tobytes(),
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


EMPTY = pack([], [], [], np.zeros(0, np.int64), np.zeros((0, 3), np.float32), COMPACT)


def unpack(chunk: tuple):
    """The inverse of `pack`: (sort keys, words, key_ids, counts, float32 points)."""
    sort_keys, word_blob, word_lengths, key_blob, key_lengths, counts, dtype, xy, eos = chunk[:9]
    counts = np.frombuffer(counts, dtype="<u4").astype(np.int64)
    total = int(counts.sum())
    points = np.empty((total, 3), dtype=np.float32)
    points[:, :2] = np.frombuffer(xy, dtype=dtype).reshape(total, 2)
    points[:, ink_math.END_OF_STROKE] = np.unpackbits(np.frombuffer(eos, np.uint8))[:total]
    return (
        np.frombuffer(sort_keys, dtype="<u8").tolist(),
        _unstrings(word_blob, word_lengths),
        _unstrings(key_blob, key_lengths),
        counts,
        points,
    )


def unpack_times(chunk: tuple, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which drawings of a chunk are raw, (drawings,) bool, and each point's time,
    (points,) float32, NaN in the others. `counts` comes from `unpack`."""
    raw_bits, raw_times = chunk[9], chunk[10]
    raw = np.unpackbits(np.frombuffer(raw_bits, np.uint8))[: len(counts)].astype(bool)
    raw = np.pad(raw, (0, len(counts) - len(raw)))
    times = np.full(int(counts.sum()), np.nan, dtype=np.float32)
    times[np.repeat(raw, counts)] = np.frombuffer(raw_times, dtype="<f4")
    return raw, times
