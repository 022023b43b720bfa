"""The Keras model: exact size, padding invariance, masked batch norm, working dropout."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from quickdraw import ink as ink_math
from quickdraw import schema
from trainer import config as config_lib
from trainer import layers, raster
from trainer import model as model_lib
from trainer import optimizer as optimizer_lib

FLAGS = ["--training_data=x", "--eval_data=x", "--classes_file=x", "--model_dir=x"]


def tiny_config(*flags):
    return config_lib.parse_flags(
        FLAGS + ["--num_conv=4,8", "--conv_len=3,3", "--num_layers=2", "--num_nodes=5", *flags]
    )


def random_batch(lengths, time, seed=0):
    """(batch, time, 3) ink, zero past each length, like the input pipeline's batches, and
    a log_aspect per drawing (read by models with --aspect_ratio only)."""
    rng = np.random.default_rng(seed)
    ink = rng.normal(size=(len(lengths), time, 3)).astype(np.float32)
    ink[:, :, 2] = rng.random((len(lengths), time)) < 0.2
    for row, length in enumerate(lengths):
        ink[row, length:] = 0
    log_aspect = rng.normal(size=len(lengths)).astype(np.float32)
    return {"ink": ink, "lengths": np.array(lengths, np.int32), "log_aspect": log_aspect}


def inputs_of(model, batch):
    """The entries of `batch` that `model` takes."""
    return {name: batch[name] for name in model.input}


def test_parameter_count_lstm_with_batch_norm():
    model = model_lib.build_model(tiny_config("--batch_norm"), num_classes=7)
    conv = (3 * 3 * 4 + 4) + (3 * 4 * 8 + 8)  # kernel * in * out + bias
    batch_norm = 4 * 3 + 4 * 4  # gamma, beta, moving mean and variance of the conv inputs
    lstm = 2 * 4 * (5 * (8 + 5) + 5) + 2 * 4 * (5 * (10 + 5) + 5)  # 2 directions, 4 gates
    dense = 10 * 7 + 7
    assert conv + batch_norm + lstm + dense == 1449
    assert model.count_params() == 1449


def test_parameter_count_gru():
    model = model_lib.build_model(tiny_config("--cell_type=gru"), num_classes=7)
    conv = (3 * 3 * 4 + 4) + (3 * 4 * 8 + 8)
    gru = 2 * (3 * 5 * (8 + 5) + 2 * 3 * 5) + 2 * (3 * 5 * (10 + 5) + 2 * 3 * 5)  # 2 biases
    dense = 10 * 7 + 7
    assert model.count_params() == conv + gru + dense == 1181


def test_layers_are_named():
    model = model_lib.build_model(tiny_config("--batch_norm"), num_classes=7)
    names = {layer.name for layer in model.layers}
    assert {"ink", "lengths", "conv_0", "conv_1", "conv_batch_norm_0", "rnn_0", "rnn_1"} <= names
    assert {"conv_dropout_1", "rnn_dropout_1", "sum_over_time", "logits"} <= names


@pytest.mark.parametrize(
    "cell_type, positions, aspect_ratio, directions, raster",
    [
        ("lstm", False, False, False, False),
        ("gru", False, False, False, False),
        ("lstm", True, False, False, False),
        ("lstm", True, True, False, False),
        ("lstm", True, True, True, False),
        ("lstm", False, False, False, True),
        ("lstm", True, True, True, True),
    ],
)
def test_prediction_does_not_depend_on_padding(
    cell_type, positions, aspect_ratio, directions, raster
):
    """The tutorial's conv stack leaked the padding into the sum; here it must not."""
    flags = (
        "--batch_norm",
        f"--cell_type={cell_type}",
        f"--positions={positions}",
        f"--aspect_ratio={aspect_ratio}",
        f"--directions={directions}",
        f"--raster={raster}",
    )
    model = model_lib.build_model(tiny_config(*flags), 7)
    # Batch norm shifts zeros away from zero: give it non-trivial statistics first.
    for layer in model.layers:
        if layer.name.startswith("conv_batch_norm"):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.7, np.float32))
            layer.beta.assign(np.full(layer.beta.shape, -0.4, np.float32))
    alone = random_batch([9], time=9, seed=1)
    padded = random_batch([30, 9, 2], time=57, seed=2)
    padded["ink"][1, :9] = alone["ink"][0]
    padded["log_aspect"][1] = alone["log_aspect"][0]
    logits_alone = model(inputs_of(model, alone), training=False).numpy()[0]
    logits_padded = model(inputs_of(model, padded), training=False).numpy()[1]
    np.testing.assert_allclose(logits_padded, logits_alone, rtol=0, atol=1e-5)


def test_positions_are_the_scaled_points():
    # Two drawings, padded; the positions layer must find each point where the pipeline's
    # scaling put it (the first point, which the ink drops, included in the range).
    drawings = [
        np.array([[50, 80, 0], [10, 80, 0], [30, 20, 1], [90, 60, 1]], np.float32),
        np.array([[0, 0, 0], [7, 0, 1], [7, 3, 1]], np.float32),
    ]
    inks = [ink_math.deltas(points) for points in drawings]
    batch = np.zeros((2, 5, 3), np.float32)
    for row, ink in enumerate(inks):
        batch[row, : len(ink)] = ink
    lengths = np.array([len(ink) for ink in inks], np.int32)
    mask = np.arange(5)[None, :] < lengths[:, None]
    out = layers.InkPositions()(batch, mask).numpy()
    np.testing.assert_array_equal(out[..., :3], batch)
    for row, points in enumerate(drawings):
        scaled = ink_math.normalize(points)[1:, :2] - 0.5
        np.testing.assert_allclose(out[row, : lengths[row], 3:], scaled, atol=1e-6)
        np.testing.assert_array_equal(out[row, lengths[row] :], 0)


def test_parameter_count_with_positions():
    plain = model_lib.build_model(tiny_config(), num_classes=7).count_params()
    model = model_lib.build_model(tiny_config("--positions"), num_classes=7)
    assert model.count_params() == plain + 3 * 2 * 4  # the first conv reads 2 more channels


def test_parameter_count_with_aspect_ratio():
    plain = model_lib.build_model(tiny_config("--positions"), num_classes=7).count_params()
    model = model_lib.build_model(tiny_config("--positions", "--aspect_ratio"), num_classes=7)
    assert set(model.input) == {"ink", "lengths", "log_aspect"}
    assert model.count_params() == plain + 3 * 1 * 4  # the first conv reads 1 more channel


def test_parameter_count_with_directions():
    plain = model_lib.build_model(tiny_config("--positions"), num_classes=7).count_params()
    model = model_lib.build_model(tiny_config("--positions", "--directions"), num_classes=7)
    assert model.count_params() == plain + 3 * 3 * 4  # the first conv reads 3 more channels


def test_directions_are_unit_steps_and_their_lengths():
    # Two drawings, padded: steps right, up-left (3-4-5), a repeated point (no step), and
    # one drawing of a single step; the padded step holds garbage that must not leak.
    steps = np.array(
        [
            [[0.5, 0.0, 0.0], [-0.3, 0.4, 1.0], [0.0, 0.0, 1.0]],
            [[0.0, -0.2, 1.0], [9.0, 9.0, 9.0], [9.0, 9.0, 9.0]],
        ],
        np.float32,
    )
    mask = np.array([[True, True, True], [True, False, False]])
    out = layers.InkDirections()(steps, mask).numpy()
    np.testing.assert_array_equal(out[..., :3], steps)
    expected = [
        [[1.0, 0.0, 0.5], [-0.6, 0.8, 0.5], [0.0, 0.0, 0.0]],
        [[0.0, -1.0, 0.2], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
    ]
    np.testing.assert_allclose(out[..., 3:], expected, atol=1e-6)


def test_aspect_ratio_channel_holds_each_drawings_value_on_its_real_steps():
    steps = np.arange(2 * 4 * 2, dtype=np.float32).reshape(2, 4, 2)
    mask = np.array([[True, True, True, False], [True, False, False, False]])
    out = layers.PerDrawingChannel()(steps, np.array([0.5, -2.0], np.float32), mask).numpy()
    np.testing.assert_array_equal(out[..., :2], steps)
    np.testing.assert_array_equal(out[..., 2], [[0.5, 0.5, 0.5, 0], [-2, 0, 0, 0]])


def test_aspect_ratio_changes_the_prediction():
    model = model_lib.build_model(tiny_config("--aspect_ratio"), num_classes=7)
    batch = random_batch([9, 5], time=9, seed=4)
    wide = model(batch, training=False).numpy()
    batch["log_aspect"] = batch["log_aspect"] + 1
    assert not np.allclose(model(batch, training=False).numpy(), wide, atol=1e-4)


def test_batch_norm_statistics_ignore_padding():
    model = model_lib.build_model(tiny_config("--batch_norm"), num_classes=7)
    layer = model.get_layer("conv_batch_norm_0")
    short = random_batch([6, 4, 5], time=6, seed=3)
    long = {"ink": np.pad(short["ink"], [(0, 0), (0, 40), (0, 0)]), "lengths": short["lengths"]}
    short = inputs_of(model, short)
    statistics = []
    for batch in (short, long):
        layer.moving_mean.assign(np.zeros(3, np.float32))
        layer.moving_variance.assign(np.ones(3, np.float32))
        model(batch, training=True)
        statistics.append((layer.moving_mean.numpy(), layer.moving_variance.numpy()))
    assert not np.allclose(statistics[0][0], 0)
    np.testing.assert_allclose(statistics[1][0], statistics[0][0], atol=1e-6)
    np.testing.assert_allclose(statistics[1][1], statistics[0][1], atol=1e-6)


def test_dropout_between_recurrent_layers_drops_in_training_only():
    model = model_lib.build_model(tiny_config("--dropout=0.5"), num_classes=7)
    batch = inputs_of(model, random_batch([12, 7], time=12))
    inference = [model(batch, training=False).numpy() for _ in range(2)]
    np.testing.assert_array_equal(inference[0], inference[1])
    # Only the dropout between the recurrent layers is random once the convs are bypassed.
    recurrent_input = model.get_layer("rnn_dropout_1")
    features = np.ones((2, 12, 10), np.float32)
    dropped = recurrent_input(features, training=True).numpy()
    assert 0.3 < np.mean(dropped == 0) < 0.7
    no_dropout = model_lib.build_model(tiny_config("--dropout=0"), num_classes=7)
    assert not [layer for layer in no_dropout.layers if "dropout" in layer.name]


def test_warmup_then_cosine_schedule():
    config = tiny_config("--learning_rate=0.01", "--warmup_steps=10", "--steps=110")
    config = config_lib.Config(**{**config.__dict__, "lr_schedule": "cosine"})
    schedule = optimizer_lib.make_optimizer(config).learning_rate  # value at step 0
    rates = optimizer_lib.WarmupSchedule(0.01, 10, 110, "cosine")
    assert float(schedule) == pytest.approx(0.001)
    assert float(rates(4)) == pytest.approx(0.005)
    assert float(rates(9)) == pytest.approx(0.01)
    assert float(rates(60)) == pytest.approx(0.005, rel=1e-5)
    assert float(rates(110)) == pytest.approx(0.0, abs=1e-9)
    constant = optimizer_lib.WarmupSchedule(0.01, 0, 110, "constant")
    assert float(constant(0)) == float(constant(100)) == pytest.approx(0.01)


def raster_of(strokes, *, with_aspect=True):
    """`InkRaster`'s image of one hand-written drawing, padded with two steps of noise."""
    ink = ink_math.ink_from_strokes(strokes)
    padded = np.concatenate([ink, np.full((2, 3), 7.0, np.float32)])[np.newaxis]
    lengths = np.array([len(ink)], np.int32)
    mask = layers.StepMask()(lengths, padded)
    log_aspect = np.float32([ink_math.log_aspect(ink_math.points_from_strokes(strokes))])
    layer = raster.InkRaster()
    image = layer(padded, mask, log_aspect) if with_aspect else layer(padded, mask)
    return np.asarray(image)[0]  # (size, size, 2)


def lit(image):
    """The (row, column) pixels the pen crossed."""
    return {tuple(int(i) for i in pixel) for pixel in np.argwhere(image[..., 0] > 0)}


def square(top, bottom, left, right):
    """The (row, column) pixels of a rectangle's outline."""
    rows = {(r, c) for r in (top, bottom) for c in range(left, right + 1)}
    return rows | {(r, c) for c in (left, right) for r in range(top, bottom + 1)}


# A square, then (pen up) a line across it, 0..100 wide and high. The model's image fills 90%
# of its 32 pixels: 0 -> pixel (0 - 0.5) * 27.9 + 15.5 = 1.55 -> 2, 100 -> 29, 25 -> 9, 40 -> 13,
# 75 -> 22.
SQUARE_AND_LINE = [[[0, 100, 100, 0, 0], [0, 0, 100, 100, 0]], [[25, 75], [40, 40]]]


def test_raster_draws_the_pen_down_steps_and_not_the_pen_up_step():
    image = raster_of(SQUARE_AND_LINE)
    assert image.shape == (raster.RASTER_SIZE, raster.RASTER_SIZE, 2)
    line = {(13, c) for c in range(9, 23)}
    # Nothing between the square's last corner (2, 2) and the line's start (13, 9).
    assert lit(image) == square(2, 29, 2, 29) | line
    assert set(np.unique(image[..., 0])) == {0.0, 1.0}


def test_raster_time_channel_falls_from_the_first_step_to_the_last():
    # Six steps: the square's four, the pen-up move, the line. A pixel keeps the earliest
    # time the pen crossed it, 1 - (steps done before) / 6; the last pixel of a step is
    # first crossed a little before the step's end.
    time = raster_of(SQUARE_AND_LINE)[..., 1]
    assert time[2, 2] == pytest.approx(1.0)  # the first point
    assert time[13, 9] == pytest.approx(1 - 5 / 6)  # the line starts after five steps
    assert 0 <= time[13, 22] < 0.02  # and ends the drawing
    top_side = time[2, 2:30]
    assert np.all(np.diff(top_side) < 0)  # drawn left to right in the first step
    assert top_side[-1] == pytest.approx(1 - 1 / 6, abs=0.01)
    assert np.all(time[raster_of(SQUARE_AND_LINE)[..., 0] == 0] == 0)


def test_raster_keeps_the_drawings_proportions():
    # 200 wide, 50 high: the pipeline scaled both to [0, 1]; log_aspect gives back the 4:1.
    # x: 0 -> 2, 200 -> 29; y: (0 - 0.5) * 0.5 * 13.95 + 15.5 = 12.01 -> 12, 50 -> 19.
    wide = [[[0, 200, 200, 0, 0], [0, 0, 50, 50, 0]]]
    assert lit(raster_of(wide)) == square(12, 19, 2, 29)
    # Without log_aspect (the tutorial's records) the drawing fills the image both ways.
    assert lit(raster_of(wide, with_aspect=False)) == square(2, 29, 2, 29)


def test_raster_branch_is_a_second_classifier_combined_in():
    model = model_lib.build_model(tiny_config("--raster"), num_classes=7)
    plain = model_lib.build_model(tiny_config(), num_classes=7).count_params()
    convolutions = 0
    channels = 2
    for filters in raster.RASTER_FILTERS:
        for _ in range(2):  # two 3 x 3 convolutions a stage, no bias, then batch norm
            convolutions += 3 * 3 * channels * filters + 4 * filters
            channels = filters
    dense = channels * 7 + 7
    assert model.count_params() == plain + convolutions + dense

    batch = random_batch([12, 5, 30], time=30, seed=3)
    inputs = inputs_of(model, batch)
    mask = np.arange(30) < batch["lengths"][:, None]
    image_of = model.get_layer("raster")
    own_images = {
        schema.IMAGE: np.asarray(image_of(batch["ink"], mask, inputs.get(schema.LOG_ASPECT)))
    }
    branches = model_lib.branch_logits(model)
    recurrent, image = branches({**inputs, **own_images}, training=False)
    # The geometric mean of the two branches' probabilities, normalized.
    product = np.sqrt(np.asarray(keras.ops.softmax(recurrent) * keras.ops.softmax(image)))
    geometric_mean = product / product.sum(axis=-1, keepdims=True)
    logits = model(inputs, training=False)
    np.testing.assert_allclose(np.log(geometric_mean), np.asarray(logits), atol=1e-5)
    assert np.abs(np.asarray(recurrent) - np.asarray(image)).max() > 1e-3

    # In training the image branch reads a batch of its own (trainer.data's images): other
    # images change only the image's logits.
    other = {schema.IMAGE: own_images[schema.IMAGE][::-1]}
    recurrent_again, other_image = branches({**inputs, **other}, training=False)
    np.testing.assert_allclose(np.asarray(recurrent_again), np.asarray(recurrent), atol=1e-6)
    np.testing.assert_allclose(np.asarray(other_image), np.asarray(image)[::-1], atol=1e-5)
    # Without --raster, the one branch is the model's own output.
    model = model_lib.build_model(tiny_config(), num_classes=7)
    (only,) = keras.tree.flatten(model_lib.branch_logits(model)(inputs_of(model, batch)))
    np.testing.assert_allclose(np.asarray(only), np.asarray(model(inputs_of(model, batch))))
