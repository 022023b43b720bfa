"""Which split and shard each drawing goes to, and its place in the shuffle.

Every choice comes from a drawing's key_id, the seed and, for `--split first`, its position
in the input (file index, line number): never from reading order or the clock, so the same
input and seed give the same files on any runner. Two ways to split:

- by hash (`--split hash`): a seed-independent hash of the key_id below `eval_fraction` of
  the uint64 range makes an eval drawing, so adding files never moves a drawing;
- by position (`--split first`): a category's first `train_per_class` good drawings in
  (file index, line number) order train and the next `eval_per_class` evaluate. Its
  `Cutoffs` are the positions of its last training drawing and its last drawing kept.

The hash also gives each drawing its seeded sort key (`sort_keys`), which picks its shard
and its place in the shard. numpy only: `pipeline.sharding` runs them in Beam.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

SPLITS = ("train", "eval")
# Split ids, indices of SPLITS; BEYOND_QUOTA marks a drawing past its category's quota.
TRAIN, EVAL, BEYOND_QUOTA = 0, 1, -1

# A drawing's place in the input: (file index, line number), ordered as files then lines.
Position = tuple[int, int]

_EVAL_HASH_PERSON = b"quickdraw-eval"
_UINT64 = (1 << 64) - 1


class Cutoffs(NamedTuple):
    """Where a category's quotas end in the input, for `--split first`."""

    train_last: Position | None  # the last training drawing; None with no training quota
    last: Position  # the last drawing kept, training or eval


# --- By hash ------------------------------------------------------------------------------


def eval_hashes(key_ids: Sequence[str]) -> np.ndarray:
    """(drawings,) uint64: the seed-independent hash of each key_id that picks its split."""
    digests = b"".join(
        [
            hashlib.blake2b(key_id.encode(), digest_size=8, person=_EVAL_HASH_PERSON).digest()
            for key_id in key_ids
        ]
    )
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def is_eval(hashes: np.ndarray, eval_fraction: float) -> np.ndarray:
    """(drawings,) bool: a hash below `eval_fraction` of the uint64 range goes to eval."""
    threshold = math.ceil(eval_fraction * 2**64)  # hash < fraction * 2**64, exactly
    if threshold > _UINT64:
        return np.ones(len(hashes), dtype=bool)
    return hashes < np.uint64(threshold)


def split_by_hash(hashes: np.ndarray, eval_fraction: float) -> np.ndarray:
    """(drawings,) int64 split ids of `--split hash`: EVAL or TRAIN."""
    return np.where(is_eval(hashes, eval_fraction), EVAL, TRAIN).astype(np.int64)


# --- By position --------------------------------------------------------------------------


def positions_by_word(
    file_index: int, words: Sequence[str], line_numbers: np.ndarray
) -> dict[str, list[Position]]:
    """The positions of the drawings of one file's batch, by word, in batch order."""
    by_word: dict[str, list[Position]] = {}
    for word, line_number in zip(words, line_numbers.tolist()):
        by_word.setdefault(word, []).append((file_index, line_number))
    return by_word


def earliest(positions: Iterable[Position], limit: int) -> list[Position]:
    """The `limit` first positions, in input order."""
    return sorted(positions)[:limit]


def cutoffs(positions: Sequence[Position], train_per_class: int) -> Cutoffs:
    """A category's cut-offs from the positions it keeps (`earliest`, at most its quota)."""
    train_last = positions[min(train_per_class, len(positions)) - 1] if train_per_class else None
    return Cutoffs(train_last, positions[-1])


def at_or_before(
    file_index: int, line_numbers: np.ndarray, position: Position | None
) -> np.ndarray:
    """(drawings,) bool: which drawings of one file come at or before `position` (none
    when it is None)."""
    if position is None:
        return np.zeros(len(line_numbers), dtype=bool)
    last_file, last_line = position
    if file_index != last_file:
        return np.full(len(line_numbers), file_index < last_file)
    return line_numbers <= last_line


def split_by_position(
    file_index: int,
    words: Sequence[str],
    line_numbers: np.ndarray,
    cutoffs_by_word: Mapping[str, Cutoffs],
) -> np.ndarray:
    """(drawings,) int64 split ids of `--split first`: TRAIN, EVAL or BEYOND_QUOTA."""
    split_ids = np.full(len(words), BEYOND_QUOTA, dtype=np.int64)
    word_array = np.asarray(words, dtype=object)
    for word in dict.fromkeys(words):
        train_last, last = cutoffs_by_word[word]
        of_word = word_array == word
        split_ids[of_word & at_or_before(file_index, line_numbers, last)] = EVAL
        split_ids[of_word & at_or_before(file_index, line_numbers, train_last)] = TRAIN
    return split_ids


# --- The shuffle --------------------------------------------------------------------------


def sort_keys(hashes: np.ndarray, seed: int) -> np.ndarray:
    """(drawings,) uint64: each drawing's seeded place in the shuffle (shard and order).

    SplitMix64's finalizer of the key_id hash mixed with the seed: a bijection of the
    hash for each seed, so different key_ids never collide and every seed shuffles anew.
    """
    seed_mix = np.uint64((seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & _UINT64)
    z = hashes ^ seed_mix
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def shards_of(keys: np.ndarray, num_shards: int) -> np.ndarray:
    """(drawings,) int64: the shard of each sort key, the same in both splits."""
    return (keys % np.uint64(num_shards)).astype(np.int64)
