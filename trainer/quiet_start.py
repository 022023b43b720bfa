"""TensorFlow's start-up without its start-up chatter on a machine without a GPU.

Importing TensorFlow 2.21 and finding its devices writes, straight to the process's stderr
and before its C++ logging reads `TF_CPP_MIN_LOG_LEVEL`, lines such as

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    E0000 ... cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ...

On a laptop these say only that it has no GPU, which the user knows; they bury the first
lines of `make train`. `import_tensorflow` holds stderr in a file while TensorFlow loads and
lists its devices, then writes back every line but the known ones. A CUDA failure is kept
where the machine has an NVIDIA driver (there it is real news), and every other line is
kept, whatever TensorFlow prints next.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile

# Lines that say nothing on a machine without a GPU; matched anywhere in a line.
NOISE = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called"),
    re.compile(r"oneDNN custom operations are on\."),
    re.compile(r"Could not find cuda drivers on your machine, GPU will not be used"),
)
# Lines that are noise only where no NVIDIA GPU is there to be used.
NO_GPU_NOISE = (re.compile(r"failed call to cuInit"),)
NVIDIA_DRIVER = "/proc/driver/nvidia/version"


def gpu_expected(environ=os.environ, driver_path: str = NVIDIA_DRIVER) -> bool:
    """Whether TensorFlow should find a GPU: an NVIDIA driver is loaded and
    CUDA_VISIBLE_DEVICES does not hide every device."""
    if environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return os.path.exists(driver_path)


def kept_lines(text: str, expect_gpu: bool) -> str:
    """`text` without the start-up lines that carry no news (see NOISE)."""
    patterns = NOISE if expect_gpu else NOISE + NO_GPU_NOISE
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if not any(p.search(line) for p in patterns))


def import_tensorflow():
    """Imports TensorFlow and lists its devices with their start-up lines filtered.

    Everything written to stderr meanwhile, by C++ or by Python, is written back once the
    devices are known, but for the known noise; a Python exception is raised as usual once
    stderr is back.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # cuInit runs here, once per process
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read().decode("utf-8", errors="replace")
            sys.stderr.write(kept_lines(text, gpu_expected()))
            sys.stderr.flush()
    # TensorFlow's own INFO lines (checkpoint sharding times, renamed SavedModel inputs)
    # would mix with the progress lines; its warnings still show. It logs through both.
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return tf
