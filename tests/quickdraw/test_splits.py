"""The split and shuffle math, on hand-computed inputs."""

import hashlib

import numpy as np

from quickdraw import splits
from quickdraw.splits import BEYOND_QUOTA, EVAL, TRAIN, Cutoffs

GOLDEN_GAMMA = 0x9E3779B97F4A7C15  # SplitMix64's increment
SEED_0_MIX = 0x632BE59BD9B4E019  # what seed 0 mixes into each hash
UINT64 = (1 << 64) - 1


def test_eval_hashes_are_blake2b_of_the_key_id_read_little_endian():
    # Pinned: a change here would move drawings between the splits of every dataset.
    hashes = splits.eval_hashes(["5201136883597312", "abc"])
    assert hashes.dtype == np.uint64
    assert hashes.tolist() == [0xD51163FDA775E3C7, 0x99CE8705FF1261E4]
    digest = hashlib.blake2b(b"abc", digest_size=8, person=b"quickdraw-eval").digest()
    assert int(hashes[1]) == int.from_bytes(digest, "little")
    assert splits.eval_hashes([]).shape == (0,)


def test_is_eval_cuts_the_uint64_range_at_the_fraction():
    hashes = np.array([0, 2**63 - 1, 2**63, UINT64], dtype=np.uint64)
    assert splits.is_eval(hashes, 0.5).tolist() == [True, True, False, False]
    assert splits.is_eval(hashes, 0.0).tolist() == [False] * 4
    assert splits.is_eval(hashes, 1.0).tolist() == [True] * 4  # the threshold passes 2**64 - 1
    assert splits.is_eval(hashes, 0.25).tolist() == [True, False, False, False]
    assert splits.split_by_hash(hashes, 0.5).tolist() == [EVAL, EVAL, TRAIN, TRAIN]


def test_sort_keys_are_splitmix64_of_the_hash_and_the_seed():
    # With seed 0, hash SEED_0_MIX ^ (n * gamma) mixes to SplitMix64's n-th output from
    # state 0; its published first two are 0xE220A8397B1DCDAF and 0x6E789E6AA1B965F4.
    hashes = np.array(
        [SEED_0_MIX ^ GOLDEN_GAMMA, SEED_0_MIX ^ ((2 * GOLDEN_GAMMA) & UINT64)], dtype=np.uint64
    )
    assert splits.sort_keys(hashes, 0).tolist() == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4]
    assert splits.sort_keys(hashes, 1).tolist() != splits.sort_keys(hashes, 0).tolist()
    # A bijection for each seed: distinct hashes never share a key.
    many = np.arange(10_000, dtype=np.uint64)
    assert len(set(splits.sort_keys(many, 7).tolist())) == 10_000


def test_shards_are_the_remainder_of_the_sort_key():
    keys = np.array([0, 5, UINT64, 7], dtype=np.uint64)
    assert splits.shards_of(keys, 3).tolist() == [0, 2, 0, 1]  # 2**64 - 1 = 3 * 6148914691236517205
    assert splits.shards_of(keys, 1).tolist() == [0, 0, 0, 0]


def test_positions_are_grouped_by_word_in_batch_order():
    by_word = splits.positions_by_word(2, ["cat", "dog", "cat"], np.array([4, 7, 9]))
    assert by_word == {"cat": [(2, 4), (2, 9)], "dog": [(2, 7)]}


def test_earliest_orders_by_file_then_line():
    positions = [(1, 5), (0, 9), (0, 2), (2, 1)]
    assert splits.earliest(positions, 3) == [(0, 2), (0, 9), (1, 5)]
    assert splits.earliest(positions, 10) == [(0, 2), (0, 9), (1, 5), (2, 1)]


def test_cutoffs_end_the_training_quota_and_the_whole_quota():
    positions = [(0, 2), (0, 9), (1, 5)]
    assert splits.cutoffs(positions, 2) == Cutoffs(train_last=(0, 9), last=(1, 5))
    assert splits.cutoffs(positions, 0) == Cutoffs(train_last=None, last=(1, 5))
    # A category with fewer drawings than its training quota trains on all of them.
    assert splits.cutoffs(positions, 5) == Cutoffs(train_last=(1, 5), last=(1, 5))


def test_at_or_before_compares_files_then_lines():
    lines = np.array([1, 5, 6])
    assert splits.at_or_before(1, lines, (1, 5)).tolist() == [True, True, False]
    assert splits.at_or_before(0, lines, (1, 5)).tolist() == [True, True, True]
    assert splits.at_or_before(2, lines, (1, 5)).tolist() == [False, False, False]
    assert splits.at_or_before(1, lines, None).tolist() == [False, False, False]


def test_split_by_position_trains_then_evaluates_then_drops():
    cutoffs = {"cat": Cutoffs((1, 2), (1, 4)), "dog": Cutoffs(None, (0, 8))}
    words = ["cat", "dog", "cat", "cat", "cat", "dog"]
    lines = np.array([1, 2, 3, 4, 5, 6])
    # In file 1: cats 1 train, 3 and 4 evaluate, 5 is beyond; dogs are all past (0, 8).
    assert splits.split_by_position(1, words, lines, cutoffs).tolist() == [
        TRAIN,
        BEYOND_QUOTA,
        EVAL,
        EVAL,
        BEYOND_QUOTA,
        BEYOND_QUOTA,
    ]
    # In file 0, before both cut-offs: cats train, dogs (no training quota) evaluate.
    assert splits.split_by_position(0, words, lines, cutoffs).tolist() == [
        TRAIN,
        EVAL,
        TRAIN,
        TRAIN,
        TRAIN,
        EVAL,
    ]
    assert splits.split_by_position(0, [], np.zeros(0, np.int64), cutoffs).tolist() == []
