"""The run's TensorBoard summaries: scalars, and images such as the confusion matrix.

Written with the core `tf.summary.write` and the plugins' metadata, which keeps the
`tensorboard` package out of the training image; TensorBoard (and Vertex AI TensorBoard)
reads them as its own `tf.summary.scalar` and `tf.summary.image` would have written them.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

# TensorBoard's scalar plugin reads summaries tagged like this; writing them with the core
# `tf.summary.write` keeps the `tensorboard` package out of the training image.
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
    data_class=summary_pb2.DATA_CLASS_SCALAR,
)


# TensorBoard's image plugin reads a string tensor of width, height and the encoded image.
_IMAGE_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="images"),
    data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
)


def write_scalars(writer, step: int, values: dict) -> None:
    with writer.as_default():
        for name, value in values.items():
            tf.summary.write(name, tf.constant(value, tf.float32), step, _SCALAR_METADATA)


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def write_image(writer, step: int, name: str, png: bytes) -> None:
    """One PNG as a TensorBoard image summary (what `tf.summary.image` writes, without the
    `tensorboard` package)."""
    width, height = png_size(png)
    with writer.as_default():
        tensor = tf.constant([str(width).encode(), str(height).encode(), png])
        tf.summary.write(name, tensor, step, _IMAGE_METADATA)


def write_confusion_image(writer, result: dict) -> None:
    """The evaluation's confusion matrix as an image summary, as the report draws it."""
    from trainer import figures

    matrix = result["confusion_matrix"]
    png = figures.confusion_heatmap(
        matrix["counts"], matrix["labels"], f"Confusion matrix at step {result['step']}"
    )
    write_image(writer, result["step"], "eval/confusion_matrix", png)
