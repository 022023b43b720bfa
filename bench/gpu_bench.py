"""Training speed on a GPU at batch 512, and the check that the recurrent layers run cuDNN.

Runs where TensorFlow sees a GPU; elsewhere `python -m bench` prints that it skipped it, and
why. For the default flags (the tutorial's model) and for `--preset local`, both at batch
512, the trainer's own training step is fed by (b) the trainer's input pipeline, as
`python -m trainer` builds it (with the preset's augmentation), and by (ref) the same
batches already in memory; the two take turns in each of the `--repeats` rounds.

cuDNN: Keras runs an LSTM or GRU on cuDNN only when its arguments and mask allow it, and
falls back to a generic loop silently otherwise. The check lists the ops of the traced
training step: cuDNN's recurrent ops (`CudnnRNNV3` and its gradient) have kernels on GPU
only, so a step that holds them and runs has run cuDNN's kernel.
"""

from __future__ import annotations

import contextlib
import statistics
from pathlib import Path

from bench import trainer_bench

BATCH_SIZE = 512
PRESETS = {"default flags": [], "--preset local": ["--preset=local"]}
INPUTS = ("trainer input", "in memory")
CUDNN_OPS = ("CudnnRNNV3", "CudnnRNNBackpropV3")


def gpu_name() -> str | None:
    """The first GPU TensorFlow sees, by name; None when it sees none."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    capability = ".".join(str(part) for part in details.get("compute_capability", ()))
    return f"{details.get('device_name', gpus[0].name)} (compute capability {capability})"


def step_op_counts(train_steps, iterator) -> dict[str, int]:
    """How many of each op type the traced training step holds, its nested functions (the
    loop's body, the recurrent layers' own functions) included."""
    import tensorflow as tf

    graph = train_steps.get_concrete_function(iterator, tf.constant(1)).graph.as_graph_def()
    counts: dict[str, int] = {}
    nodes = list(graph.node)
    for function in graph.library.function:
        nodes.extend(function.node_def)
    for node in nodes:
        counts[node.op] = counts.get(node.op, 0) + 1
    return counts


def kernel_devices(op: str) -> list[str]:
    """The device types TensorFlow has registered kernels of `op` for."""
    from tensorflow.python.framework import kernels

    return sorted(
        {kernel.device_type for kernel in kernels.get_registered_kernels_for_op(op).kernel}
    )


def _measure(folder: Path, repeats: int, steps: int, warmup: int) -> dict:
    import tensorflow as tf

    from bench import training_speed
    from trainer import checks, data, train
    from trainer import config as config_lib

    pattern = str(folder / "training.tfrecord-*")
    classes = checks.read_classes(str(folder / "training.tfrecord.classes"))
    required = ["--training_data=x", "--eval_data=x", "--classes_file=x", "--model_dir=x"]
    results = {"gpu": gpu_name(), "tensorflow": tf.__version__}
    build = tf.sysconfig.get_build_info()
    results["built_with"] = f"CUDA {build.get('cuda_version')}, cuDNN {build.get('cudnn_version')}"
    for label, flags in PRESETS.items():
        config = config_lib.parse_flags(required + flags + [f"--batch_size={BATCH_SIZE}"])

        def trainer_input(config=config):
            return data.dataset(
                pattern,
                BATCH_SIZE,
                training=True,
                augment_fn=train.load_augment_fn(config),
                image_fn=train.load_image_fn(config),
                log_aspect=config.aspect_ratio,
            )

        # Untimed: a process's first run pays once for what the warm-up steps do not cover
        # (the GPU's kernels compiled, cuDNN's algorithm search, tf.data's threads started);
        # without it the first round's first case ran at a quarter of the others' rate.
        training_speed.examples_per_second(config, trainer_input(), len(classes), steps=warmup)
        rounds = []
        for _ in range(repeats):
            rounds.append(
                {
                    "trainer input": training_speed.examples_per_second(
                        config, trainer_input(), len(classes), steps=steps, warmup_steps=warmup
                    ),
                    "in memory": training_speed.examples_per_second(
                        config,
                        training_speed.in_memory(trainer_input(), steps + warmup),
                        len(classes),
                        steps=steps,
                        warmup_steps=warmup,
                    ),
                }
            )
        for name in INPUTS:
            results[f"{label}/{name}"] = statistics.median(r[name] for r in rounds)
        results[f"{label}/input_over_memory"] = statistics.median(
            r["trainer input"] / r["in memory"] for r in rounds
        )

        # The cuDNN check, on the same step the rates above timed; the step then runs.
        train_steps = training_speed.fresh_train_steps(config, len(classes))
        iterator = iter(trainer_input())
        counts = step_op_counts(train_steps, iterator)
        float(train_steps(iterator, tf.constant(2)))
        results[f"{label}/cudnn_ops"] = {op: counts.get(op, 0) for op in CUDNN_OPS}
        results[f"{label}/recurrent_layers"] = config.num_layers
    results["kernel_devices"] = {op: kernel_devices(op) for op in CUDNN_OPS}
    return results


def run(records: Path | None = None, repeats: int = 3, steps: int = 40, log=print) -> dict | None:
    """The figures, or None when TensorFlow sees no GPU. `records`: a folder of the
    pipeline's TFRecords (`training.tfrecord-*` and its classes file); by default the 26
    categories x 150 real drawings of `../shared` are converted first, as for the CPU bench."""
    name = gpu_name()
    if name is None:
        return None
    log(f"GPU: {name}")
    if records is None:
        folder = trainer_bench.real_records(log)
    else:
        folder = contextlib.nullcontext(records)
    with folder as records:
        return _measure(records, repeats, steps, warmup=5)


def table(results: dict) -> str:
    rows = [
        f"GPU: {results['gpu']}; TensorFlow {results['tensorflow']} ({results['built_with']})",
        "",
        f"| batch {BATCH_SIZE} | (b) trainer input | in memory | (b)/in memory "
        "| cuDNN ops in the step | recurrent layers |",
        "|---|---|---|---|---|---|",
    ]
    for label in PRESETS:
        ops = ", ".join(f"{count} {op}" for op, count in results[f"{label}/cudnn_ops"].items())
        rows.append(
            f"| {label} | {results[f'{label}/trainer input']:,.0f} ex/s "
            f"| {results[f'{label}/in memory']:,.0f} ex/s "
            f"| {results[f'{label}/input_over_memory']:.0%} | {ops} "
            f"| {results[f'{label}/recurrent_layers']} bidirectional |"
        )
    devices = "; ".join(
        f"{op}: {', '.join(found) or 'none'}" for op, found in results["kernel_devices"].items()
    )
    rows.append("")
    rows.append(f"Kernels TensorFlow registers for cuDNN's recurrent ops: {devices}.")
    rows.append(
        "Each bidirectional layer holds one CudnnRNNV3 per direction; a step that holds them "
        "ran on the GPU, since no other device has their kernels."
    )
    rows.append("Rates: medians over the rounds; the ratio: the median of each round's own.")
    return "\n".join(rows)
