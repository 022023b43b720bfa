"""The Quick, Draw! classifier: conv1d + stacked bidirectional LSTM on the pipeline's ink
(with `--raster`, beside a 2-D convolutional branch on the ink drawn as an image).

Modules, in the order a reader meets them:

  config      flags -> one frozen Config (`python -m trainer --help`)
  data        tf.data from TFRecord globs, bucketed by length
  model       build_model(config, num_classes) -> keras.Model; the optimizer
  train       distribution strategy, training loop, checkpoints (`train_and_evaluate`)
  evaluate    loss, top-1/top-3, per-class accuracy, confusion matrix -> metrics.json
  summaries   TensorBoard scalars and images (the confusion matrix at each evaluation)
  report      `python -m trainer.report`: MODEL_DIR/report/index.html, the run as a page
  figures     the report's figures (matplotlib), from metrics, logs and stats.json
  history     the run's scalars read back from its TensorBoard logs
  render      drawings as pictures: strokes of absolute points on matplotlib axes
  preprocess  the pipeline's ink math in TensorFlow, for serving
  export      the SavedModel that takes raw points
  predict     `python -m trainer.predict`: classify ndjson drawings with the export
"""
