"""Serving: the in-graph ink math equals the pipeline's; the SavedModel classifies raw points."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from quickdraw import ink as ink_math
from tests.support.trainer_fixtures import SHARED_QUICKDRAW, require_shared_quickdraw
from trainer import config as config_lib
from trainer import export, tf_ink, views
from trainer import model as model_lib

CLASSES = ["circle", "hat", "sock"]


def real_strokes(limit_per_file=4):
    """Strokes of real drawings: the 50 fixtures and a few of each category with 150."""
    require_shared_quickdraw()
    paths = [SHARED_QUICKDRAW / "fixtures" / "simplified_10cats_x5.ndjson"]
    paths += sorted((SHARED_QUICKDRAW / "simplified").glob("*.ndjson"))[:60]
    strokes = []
    for path in paths:
        with open(path) as file:
            for number, line in enumerate(file):
                if path.parent.name == "simplified" and number >= limit_per_file:
                    break
                strokes.append(json.loads(line)["drawing"])
    return strokes


def padded(points_list, fill=0.0):
    batch, lengths = export.pad_points(points_list)
    for row, length in enumerate(lengths):
        batch[row, length:] = fill  # the signature must ignore whatever pads the batch
    return batch, lengths


def test_in_graph_preprocessing_equals_the_pipeline_on_real_drawings():
    strokes = real_strokes()
    assert len(strokes) > 250
    points = [ink_math.points_from_strokes(drawing) for drawing in strokes]
    batch, lengths = padded(points, fill=1e6)
    ink, ink_lengths = tf_ink.ink_from_points(batch, lengths)
    ink, ink_lengths = ink.numpy(), ink_lengths.numpy()
    worst = 0.0
    for row, drawing in enumerate(strokes):
        expected = ink_math.ink_from_strokes(drawing)
        assert ink_lengths[row] == len(expected)
        worst = max(worst, float(np.abs(ink[row, : len(expected)] - expected).max()))
        assert not ink[row, len(expected) :].any()
    assert worst < 1e-6


def test_in_graph_aspect_ratio_equals_the_pipeline_on_real_drawings():
    strokes = real_strokes()
    points = [ink_math.points_from_strokes(drawing) for drawing in strokes]
    batch, lengths = padded(points, fill=1e6)
    served = tf_ink.log_aspect_from_points(batch, lengths).numpy()
    expected = np.array([ink_math.log_aspect(drawing) for drawing in points])
    assert np.abs(served - expected).max() < 1e-6
    assert np.std(expected) > 0.2  # real drawings: wide and tall ones


def test_in_graph_aspect_ratio_on_hand_written_edge_cases():
    drawings = [
        [[[0, 10, 20], [5, 5, 5]]],  # a horizontal line: floored height
        [[[3, 3], [7, 7]]],  # two equal points: 0
        [[[0, 25], [0, 100]], [[10], [200]]],  # extents over all strokes: 25 by 200
    ]
    points = [ink_math.points_from_strokes(drawing) for drawing in drawings]
    batch, lengths = padded(points + [np.zeros((0, 3), np.float32)], fill=-5.0)
    served = tf_ink.log_aspect_from_points(batch, lengths).numpy()
    np.testing.assert_allclose(served, [np.log(255), 0, np.log(25 / 200), 0], atol=1e-6)


@pytest.mark.parametrize(
    "drawing",
    [
        [[[0, 10, 20], [5, 5, 5]]],  # a horizontal line: y has no range
        [[[3, 3], [7, 7]]],  # two equal points: neither axis has a range
        [[[0, 255], [0, 255]], [[10], [200]]],  # a one-point stroke
    ],
)
def test_in_graph_preprocessing_on_hand_written_edge_cases(drawing):
    points = ink_math.points_from_strokes(drawing)
    batch, lengths = padded([points, np.zeros((9, 3), np.float32)], fill=-5.0)
    ink, ink_lengths = tf_ink.ink_from_points(batch, lengths)
    expected = ink_math.ink_from_strokes(drawing)
    assert int(ink_lengths[0]) == len(expected)
    np.testing.assert_array_equal(ink.numpy()[0, : len(expected)], expected)


def test_a_drawing_with_no_points_gives_zero_ink_not_nan():
    batch, lengths = padded([np.zeros((0, 3), np.float32), np.ones((3, 3), np.float32)])
    ink, ink_lengths = tf_ink.ink_from_points(batch, lengths)
    assert ink_lengths.numpy().tolist() == [0, 2]
    assert np.isfinite(ink.numpy()).all()


def export_tiny(directory, *flags):
    config = config_lib.parse_flags(
        ["--training_data=x", "--eval_data=x", "--classes_file=x", "--model_dir=x"]
        + ["--num_conv=6,6", "--conv_len=5,3", "--num_layers=2", "--num_nodes=8", *flags]
    )
    model = model_lib.build_model(config, len(CLASSES))
    # Batch norm at its initial statistics would hide a mistake: give it others.
    layers = list(model.layers)
    if config.raster:
        layers += model.get_layer("raster_network").layers
    for layer in layers:
        if layer.name.startswith("conv_batch_norm") or layer.name.endswith("_batch_norm"):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.3, np.float32))
            layer.moving_variance.assign(np.full(layer.moving_variance.shape, 2.0, np.float32))
    export.export_model(model.get_weights(), config, CLASSES, str(directory))
    return model, config, directory


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("model") / "export", "--batch_norm")


def test_export_directory_is_complete(exported):
    _, config, directory = exported
    assert (directory / "saved_model.pb").is_file()
    assert (directory / export.CLASSES_FILE).read_text().split() == CLASSES
    assert config_lib.Config.from_json((directory / export.CONFIG_FILE).read_text()) == config
    assert export.export_dir_of(str(directory.parent)) == str(directory)
    assert export.export_dir_of(str(directory)) == str(directory)


def assert_serving_equals_model(model, directory):
    """The signature on raw points == the Keras model on the pipeline's ink."""
    strokes = real_strokes(limit_per_file=1)[:40]
    serve = tf.saved_model.load(str(directory)).signatures[export.SIGNATURE]
    batch, lengths = padded([ink_math.points_from_strokes(s) for s in strokes], fill=3.0)
    served = serve(points=tf.constant(batch), lengths=tf.constant(lengths))

    inks = [ink_math.ink_from_strokes(drawing) for drawing in strokes]
    ink_batch, ink_lengths = export.pad_points(inks)
    features = {"ink": ink_batch, "lengths": ink_lengths}
    if "log_aspect" in model.input:
        aspects = [ink_math.log_aspect(ink_math.points_from_strokes(s)) for s in strokes]
        features["log_aspect"] = np.array(aspects, np.float32)
    logits = model(features, training=False)
    expected = tf.nn.softmax(logits).numpy()
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)

    top = served["top_k_classes"].numpy()
    assert top.shape == (len(strokes), len(CLASSES))  # top_k is capped at the class count
    best = [CLASSES[i] for i in expected.argmax(axis=1)]
    assert [names[0].decode() for names in top] == best
    assert np.all(np.diff(served["top_k_probabilities"].numpy(), axis=1) <= 0)


def test_serving_signature_equals_the_model_on_the_pipelines_ink(exported):
    model, _, directory = exported
    assert_serving_equals_model(model, directory)


def test_serving_signature_equals_the_model_with_gru_cells(tmp_path):
    model, _, directory = export_tiny(tmp_path / "export", "--cell_type=gru")
    assert_serving_equals_model(model, directory)


def test_serving_signature_equals_the_model_with_positions(tmp_path):
    model, _, directory = export_tiny(tmp_path / "export", "--positions")
    assert_serving_equals_model(model, directory)


def test_serving_signature_equals_the_model_with_the_aspect_ratio(tmp_path):
    model, _, directory = export_tiny(tmp_path / "export", "--positions", "--aspect_ratio")
    assert_serving_equals_model(model, directory)


def test_serving_signature_equals_the_model_with_directions(tmp_path):
    flags = ("--positions", "--aspect_ratio", "--directions")
    model, _, directory = export_tiny(tmp_path / "export", *flags)
    assert_serving_equals_model(model, directory)


def test_serving_signature_equals_the_model_with_the_raster_branch(tmp_path):
    flags = ("--positions", "--aspect_ratio", "--directions", "--raster")
    model, _, directory = export_tiny(tmp_path / "export", *flags)
    assert_serving_equals_model(model, directory)


def test_serving_averages_the_views_as_evaluation_does(tmp_path):
    flags = ("--positions", "--aspect_ratio", "--directions", "--test_time_views=4")
    model, config, directory = export_tiny(tmp_path / "export", *flags)
    strokes = real_strokes(limit_per_file=1)[:30]
    loaded = tf.saved_model.load(str(directory))
    batch, lengths = padded([ink_math.points_from_strokes(s) for s in strokes], fill=3.0)
    averaged = loaded.signatures[export.SIGNATURE](points=batch, lengths=lengths)
    single = loaded.signatures[export.SINGLE_VIEW_SIGNATURE](points=batch, lengths=lengths)

    inks = [ink_math.ink_from_strokes(drawing) for drawing in strokes]
    ink_batch, ink_lengths = export.pad_points(inks)
    aspects = [ink_math.log_aspect(ink_math.points_from_strokes(s)) for s in strokes]
    features = {"ink": ink_batch, "lengths": ink_lengths, "log_aspect": np.float32(aspects)}
    logits = views.averaged_logits(
        lambda inputs: model(inputs, training=False), features, config.test_time_views
    )
    # What evaluation scores (the Keras model) is what the export serves (fused kernels).
    expected = tf.nn.softmax(logits).numpy()
    np.testing.assert_allclose(averaged["probabilities"].numpy(), expected, atol=1e-5)
    alone = tf.nn.softmax(model(features, training=False)).numpy()
    np.testing.assert_allclose(single["probabilities"].numpy(), alone, atol=1e-5)
    assert np.abs(expected - alone).max() > 1e-4  # the views do change the prediction
    # A drawing sent alone gets the prediction it got in the padded batch.
    for row in (0, 17):
        one, length = padded([ink_math.points_from_strokes(strokes[row])])
        served = loaded.signatures[export.SIGNATURE](points=one, lengths=length)
        np.testing.assert_allclose(served["probabilities"].numpy()[0], expected[row], atol=1e-5)


@pytest.mark.parametrize("flags", [["--test_time_views=1"], ["--test_time_views=3", "--raster"]])
def test_serving_takes_a_batch_of_one_point_drawings(tmp_path, flags):
    _, _, directory = export_tiny(tmp_path / "export", *flags)
    serve = tf.saved_model.load(str(directory)).signatures[export.SIGNATURE]
    for points in ([[[10, 10, 1]], [[3, 4, 1]]], [[[0, 0, 0]]]):  # no ink step in the batch
        served = serve(points=tf.constant(points, tf.float32), lengths=[1] * len(points))
        probabilities = served["probabilities"].numpy()
        assert probabilities.shape == (len(points), len(CLASSES))
        np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)


@pytest.mark.parametrize(
    "points, lengths, message",
    [
        (np.ones((1, 4, 3)), [5], "lengths: a drawing longer than points' time dimension"),
        (np.ones((1, 4, 3)), [-1], "lengths: a negative length"),
        (np.ones((1, 4, 3)), [4, 4], "lengths: one per drawing of points"),
        (np.full((1, 4, 3), np.nan), [4], "points: a coordinate is NaN or infinite"),
    ],
)
def test_serving_names_what_is_wrong_with_a_request(exported, points, lengths, message):
    serve = tf.saved_model.load(str(exported[2])).signatures[export.SIGNATURE]
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        serve(points=tf.constant(points, tf.float32), lengths=tf.constant(lengths, tf.int32))
    assert message in raised.value.message.replace("\\'", "'")


def test_serving_takes_a_blank_canvas(exported):
    serve = tf.saved_model.load(str(exported[2])).signatures[export.SIGNATURE]
    served = serve(points=tf.zeros((2, 3, 3)), lengths=tf.constant([0, 3], tf.int32))
    np.testing.assert_allclose(served["probabilities"].numpy().sum(axis=1), 1, atol=1e-5)


def test_a_single_view_model_has_one_signature(exported):
    _, _, directory = exported
    assert list(tf.saved_model.load(str(directory)).signatures) == [export.SIGNATURE]


def test_serving_latency_is_measured_on_one_drawing(exported):
    _, _, directory = exported
    points = ink_math.points_from_strokes(real_strokes(limit_per_file=1)[0])
    latency = export.serving_latency(str(directory), points, calls=5, warmup_calls=2)
    assert latency["points"] == len(points)
    assert 0 < latency["median_ms"] <= latency["p90_ms"]
