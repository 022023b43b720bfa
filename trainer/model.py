"""The tutorial's classifier in Keras 3: conv1d stack, stacked bidirectional RNN, sum, dense.

Three things differ from the tutorial's graph, each on purpose:

* The padded steps are set back to zero before every convolution. A `same` convolution's
  bias (and batch norm's shift) makes padded steps non-zero, and the next convolution
  would carry them into the drawing's last real steps: the tutorial's prediction of a
  drawing depended on how long the other drawings of its batch were.
* Batch norm, when on, computes its statistics over the real steps only (masked), summed
  over all replicas.
* Dropout between the recurrent layers is a layer of its own that really drops; the
  tutorial's cuDNN layers were one layer each, so their inter-layer dropout did nothing.

The recurrent layers read a right-padded mask, so on a GPU Keras runs the cuDNN kernel.
`--raster` adds a second branch, beyond the tutorial: the ink drawn as an image in the graph
(`InkRaster`) and read by 2-D convolutions (`raster_network`); the model then returns the logits
of the geometric mean of the two branches' class probabilities, and training gives each branch its
own loss (`branch_logits`).

The network is wired once (`_wire`), both for the model that trains and for the serving path
(`inference_logits`), which runs the same layers with TensorFlow's fused LSTM kernel. The
layers themselves live in `trainer.layers` and `trainer.raster`.
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf

from quickdraw import schema
from trainer import layers, raster
from trainer.config import Config


def _wire(config: Config, num_classes: int, layer, ink, lengths, log_aspect, fused=False):
    """The network from its inputs to its logits, wired once for the model and for serving.

    Args:
      layer: `(name, make) -> layer`, the layer called `name`: `make(name=name)` when
        building the model, the model's own layer when serving (`inference_logits`).
      ink: (batch, time, 3) float32, right-padded; lengths: (batch,) int32.
      log_aspect: (batch,) float32 with `--aspect_ratio`, else None.
      fused: run each bidirectional LSTM with TensorFlow's fused kernel (`_fused_lstm`).
    """
    mask = layer("step_mask", layers.StepMask)(lengths, ink)  # (batch, time)
    steps = ink
    if config.positions:
        steps = layer("positions", layers.InkPositions)(ink, mask)  # (batch, time, 5)
    if config.aspect_ratio:
        steps = layer("aspect_ratio", layers.PerDrawingChannel)(steps, log_aspect, mask)
    if config.directions:
        steps = layer("directions", layers.InkDirections)(steps, mask)  # 3 more channels
    for index, (filters, width) in enumerate(zip(config.num_conv, config.conv_len)):
        if config.batch_norm:
            norm = layer(f"conv_batch_norm_{index}", layers.MaskedBatchNormalization)
            steps = norm(steps, mask)
        if index > 0 and config.dropout:
            dropout = functools.partial(keras.layers.Dropout, config.dropout)
            steps = layer(f"conv_dropout_{index}", dropout)(steps)
        steps = layer(f"conv_zero_padding_{index}", layers.ZeroPadding)(steps, mask)
        conv = functools.partial(keras.layers.Conv1D, filters, width, padding="same")
        steps = layer(f"conv_{index}", conv)(steps)  # (batch, time, filters)

    cell = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[config.cell_type]
    for index in range(config.num_layers):
        if index > 0 and config.dropout:
            dropout = functools.partial(keras.layers.Dropout, config.dropout)
            steps = layer(f"rnn_dropout_{index}", dropout)(steps)

        def bidirectional(name):
            return keras.layers.Bidirectional(
                cell(config.num_nodes, return_sequences=True), name=name
            )

        rnn = layer(f"rnn_{index}", bidirectional)
        if fused and config.cell_type == "lstm":
            forward = _fused_lstm(rnn.forward_layer.cell, steps, lengths, reverse=False)
            backward = _fused_lstm(rnn.backward_layer.cell, steps, lengths, reverse=True)
            steps = tf.concat([forward, backward], axis=-1) * tf.cast(mask, steps.dtype)[..., None]
        else:
            steps = rnn(steps, mask=mask)  # (batch, time, 2 * num_nodes)

    summed = layer("sum_over_time", layers.MaskedSum)(steps, mask)  # (batch, 2 * num_nodes)
    logits = layer("logits", functools.partial(keras.layers.Dense, num_classes))(summed)
    if config.raster:
        image = layer("raster", raster.InkRaster)(ink, mask, log_aspect)
        network = layer("raster_network", lambda name: raster.raster_network(config, num_classes))
        raster_logits = network(image)  # (batch, classes)
        logits = layer("branch_mean", layers.GeometricMeanProbabilities)([logits, raster_logits])
    return logits  # (batch, classes)


def build_model(config: Config, num_classes: int) -> keras.Model:
    """The classifier: {"ink": (batch, time, 3), "lengths": (batch,)} -> (batch, classes)
    logits; with `--aspect_ratio` the inputs also hold "log_aspect": (batch,)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    ink = keras.Input(shape=(None, schema.INK_COLUMNS), name=schema.INK)  # (batch, time, 3)
    lengths = keras.Input(shape=(), dtype="int32", name=schema.LENGTHS)  # (batch,)
    inputs = {schema.INK: ink, schema.LENGTHS: lengths}
    if config.aspect_ratio:
        inputs[schema.LOG_ASPECT] = keras.Input(shape=(), name=schema.LOG_ASPECT)  # (batch,)

    def new_layer(name, make):
        return make(name=name)

    logits = _wire(config, num_classes, new_layer, ink, lengths, inputs.get(schema.LOG_ASPECT))
    return keras.Model(inputs, logits, name="sketch_classifier")


def branch_logits(model: keras.Model) -> keras.Model:
    """The model that training steps: the same layers and weights as `model`, returning each
    branch's logits as a list, so that each branch learns from a loss of its own (the
    recurrent branch and, with `--raster`, the image branch); `model` returns the logits
    of their geometric mean probabilities.

    With `--raster` its inputs also hold `schema.IMAGE`, the image branch's own batch of images
    (`InkRaster`'s), which need not show the drawings of the recurrent branch's batch:
    training gives it drawings in random order, not bucketed by length (`trainer.data`).
    """
    names = [layer.name for layer in model.layers]
    if "branch_mean" not in names:
        return keras.Model(model.inputs, [model.output], name="branches")
    image = keras.Input(shape=model.get_layer("raster").output.shape[1:], name=schema.IMAGE)
    recurrent_logits = model.get_layer("branch_mean").input[0]
    image_logits = model.get_layer("raster_network")(image)
    return keras.Model(
        {**model.input, schema.IMAGE: image}, [recurrent_logits, image_logits], name="branches"
    )


def inference_logits(model: keras.Model, config: Config, ink, lengths, log_aspect=None):
    """`model`'s logits for inference, with each bidirectional LSTM run by TensorFlow's fused
    `BlockLSTMV2` kernel: one op per direction instead of a loop of small ops per step,
    about four times faster on a CPU for a single drawing (the serving case). It takes
    Keras's weights as they are (same gate order, no forget bias); the serving signature
    uses it, and `tests/trainer/test_export.py` holds it equal to `model` itself. GRU
    layers, which have no fused kernel, and `--raster`'s image branch run as in the model.

    Args:
      ink: (batch, time, 3) float32, right-padded.
      lengths: (batch,) int32.
      log_aspect: (batch,) float32, with `--aspect_ratio` only.
    """

    def own_layer(name, make):
        return model.get_layer(name)

    log_aspect = log_aspect if config.aspect_ratio else None
    num_classes = model.output.shape[-1]
    return _wire(config, num_classes, own_layer, ink, lengths, log_aspect, fused=True)


def _fused_lstm(cell, steps, lengths, reverse):
    """One direction of a masked Keras LSTM over right-padded (batch, time, channels).

    Padding follows each drawing's real steps, so it cannot reach them going forward;
    going backward, each drawing is reversed within its own length first.
    """
    if reverse:
        steps = tf.reverse_sequence(steps, lengths, seq_axis=1, batch_axis=0)
    units = cell.units
    zeros = tf.zeros([tf.shape(steps)[0], units], steps.dtype)
    peephole = tf.zeros([units], steps.dtype)
    outputs = tf.raw_ops.BlockLSTMV2(
        seq_len_max=tf.cast(tf.shape(steps)[1], tf.int64),
        x=tf.transpose(steps, [1, 0, 2]),  # (time, batch, channels)
        cs_prev=zeros,
        h_prev=zeros,
        w=tf.concat([cell.kernel, cell.recurrent_kernel], axis=0),
        wci=peephole,
        wcf=peephole,
        wco=peephole,
        b=cell.bias,
        cell_clip=-1.0,  # no clipping
        use_peephole=False,
    ).h
    outputs = tf.transpose(outputs, [1, 0, 2])  # (batch, time, units)
    if reverse:
        outputs = tf.reverse_sequence(outputs, lengths, seq_axis=1, batch_axis=0)
    return outputs
