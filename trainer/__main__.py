"""`python -m trainer`: parse the flags, then train, evaluate and export.

    python -m trainer --training_data 'data/training.tfrecord-*' \
        --eval_data 'data/eval.tfrecord-*' --classes_file data/training.tfrecord.classes \
        --model_dir model [--preset local] [hyperparameters]

`python -m trainer --help` lists every flag.
"""

from __future__ import annotations

import logging
import os
import sys

# TensorFlow's C++ start-up chatter (no CUDA on this machine, ...) drowns the progress lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from quickdraw import cli  # noqa: E402
from trainer import config as config_lib  # noqa: E402


def main(argv=None) -> int:
    config = config_lib.parse_flags(argv)  # exits 2 on a bad flag
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    # TensorFlow loads only once the flags are known to be good, and without the lines it
    # prints at start on a machine without a GPU.
    from trainer import quiet_start

    quiet_start.import_tensorflow()
    from trainer import checkpoints, cluster, train

    try:
        train.train_and_evaluate(config)
    except cli.UsageError as error:
        print(f"python -m trainer: error: {error}", file=sys.stderr)
        return 2
    except cluster.WorkerLost as error:
        print(f"python -m trainer: error: {error}", file=sys.stderr)
        return 1
    except checkpoints.Stopped as stopped:
        logging.warning("%s: the same command resumes the run", stopped)
        return 128 + stopped.signal_number  # as if the signal had ended the process
    return 0


if __name__ == "__main__":
    sys.exit(main())
