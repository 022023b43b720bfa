"""Packing drawings for the shuffle loses nothing, in either coordinate width."""

import numpy as np
import pytest

from pipeline import chunks


@pytest.mark.parametrize(
    "coordinates, dtype",
    [
        ([[0, 255], [17, 3], [255, 0]], chunks.COMPACT),
        ([[0, 256], [17, 3], [255, 0]], chunks.FULL),  # beyond a byte
        ([[0, 1.5], [17, 3], [255, 0]], chunks.FULL),  # not an integer
        ([[-1, 1], [17, 3], [255, 0]], chunks.FULL),  # negative
    ],
)
def test_pack_then_unpack_gives_back_the_same_drawings(coordinates, dtype):
    points = np.zeros((3, 3), np.float32)
    points[:, :2] = coordinates
    points[[0, 2], 2] = 1
    assert chunks.coordinate_dtype(points) == dtype
    keys = np.array([9, 2**64 - 1], np.uint64)
    packed = chunks.pack(
        chunks.ShardDrawings(keys, ["hot dog", "café"], ["1", "2"], np.array([1, 2]), points)
    )
    assert packed[6] == dtype
    keys, words, key_ids, counts, unpacked, _, _ = chunks.unpack(packed)
    assert keys.tolist() == [9, 2**64 - 1]
    assert words == ["hot dog", "café"] and key_ids == ["1", "2"]
    assert counts.tolist() == [1, 2]
    np.testing.assert_array_equal(unpacked, points)
    assert unpacked.dtype == np.float32


def test_compact_chunks_are_a_quarter_of_the_ink():
    points = np.random.default_rng(0).integers(0, 256, (4600, 3)).astype(np.float32)
    points[:, 2] = points[:, 2] > 128
    packed = chunks.pack(
        chunks.ShardDrawings(
            np.arange(100, dtype=np.uint64),
            ["cat"] * 100,
            ["5201136883597312"] * 100,
            np.full(100, 46),
            points,
        )
    )
    size = sum(len(value) for value in packed)
    assert size < 0.3 * points.size * 4


def test_the_empty_chunk_unpacks_to_nothing():
    keys, words, key_ids, counts, points, raw, times = chunks.unpack(chunks.EMPTY)
    assert words == key_ids == [] and keys.size == counts.size == raw.size == times.size == 0
    assert points.shape == (0, 3)
