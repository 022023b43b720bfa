"""The tutorial's conversion, as its script did it: one process, one drawing at a time.

`json.loads`, the tutorial's numpy `parse_line`, a `tf.train.Example` built field by field
and a `TFRecordWriter` chosen at random for each record. This is baseline (a) of
`make bench`; it reads every line of every file (like `--split=hash`) so that both sides
convert the same drawings.

    python -m bench.tutorial_baseline --input 'dir/*.ndjson' --output_dir out
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random

import numpy as np
import tensorflow as tf


def parse_line(ndjson_line):
    """The tutorial's `parse_line`, unchanged but for its prints."""
    sample = json.loads(ndjson_line)
    class_name = sample["word"]
    if not class_name:
        return None, None
    inkarray = sample["drawing"]
    stroke_lengths = [len(stroke[0]) for stroke in inkarray]
    total_points = sum(stroke_lengths)
    np_ink = np.zeros((total_points, 3), dtype=np.float32)
    current_t = 0
    if not inkarray:
        return None, None
    for stroke in inkarray:
        if len(stroke[0]) != len(stroke[1]):
            return None, None
        for i in [0, 1]:
            np_ink[current_t : (current_t + len(stroke[0])), i] = stroke[i]
        current_t += len(stroke[0])
        np_ink[current_t - 1, 2] = 1  # stroke_end
    lower = np.min(np_ink[:, 0:2], axis=0)
    upper = np.max(np_ink[:, 0:2], axis=0)
    scale = upper - lower
    scale[scale == 0] = 1
    np_ink[:, 0:2] = (np_ink[:, 0:2] - lower) / scale
    np_ink[1:, 0:2] -= np_ink[0:-1, 0:2]
    np_ink = np_ink[1:, :]
    return np_ink, class_name


def convert(input_pattern: str, output_dir: str, num_shards: int, eval_fraction: float) -> int:
    files = sorted(glob.glob(input_pattern))
    classes = sorted({os.path.basename(f)[: -len(".ndjson")] for f in files})
    class_index = {name: index for index, name in enumerate(classes)}
    os.makedirs(output_dir, exist_ok=True)
    writers = {
        split: [
            tf.io.TFRecordWriter(
                os.path.join(output_dir, f"{split}.tfrecord-{i:05d}-of-{num_shards:05d}")
            )
            for i in range(num_shards)
        ]
        for split in ("training", "eval")
    }
    count = 0
    for path in files:
        with open(path) as handle:
            for line in handle:
                ink, class_name = parse_line(line)
                if ink is None:
                    continue
                features = {
                    "class_index": tf.train.Feature(
                        int64_list=tf.train.Int64List(value=[class_index.get(class_name, 0)])
                    ),
                    "ink": tf.train.Feature(float_list=tf.train.FloatList(value=ink.flatten())),
                    "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=ink.shape)),
                }
                example = tf.train.Example(features=tf.train.Features(feature=features))
                split = "eval" if random.random() < eval_fraction else "training"
                writers[split][random.randint(0, num_shards - 1)].write(example.SerializeToString())
                count += 1
    for split_writers in writers.values():
        for writer in split_writers:
            writer.close()
    return count


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_shards", type=int, default=10)
    parser.add_argument("--eval_fraction", type=float, default=0.1)
    args = parser.parse_args(argv)
    count = convert(args.input, args.output_dir, args.num_shards, args.eval_fraction)
    print(f"wrote {count} drawings")


if __name__ == "__main__":
    main()
