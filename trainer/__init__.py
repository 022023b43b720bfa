"""The Quick, Draw! classifier: conv1d + stacked bidirectional LSTM on the pipeline's ink
(with `--raster`, beside a 2-D convolutional branch on the ink drawn as an image).

Modules, in the order a reader meets them:

  config      flags -> one frozen Config (`python -m trainer --help`)
  data        tf.data from TFRecord globs, bucketed by length
  model       build_model(config, num_classes) -> keras.Model; the optimizer
  train       distribution strategy, training loop, checkpoints (`train_and_evaluate`)
  evaluate    loss, top-1/top-3, per-class accuracy, confusion matrix -> metrics.json
  preprocess  the pipeline's ink math in TensorFlow, for serving
  export      the SavedModel that takes raw points
  predict     `python -m trainer.predict`: classify ndjson drawings with the export
  serve       `python -m trainer.serve`: the export over HTTP (Vertex AI's API) and a page
  serving/    the server's request protocol, batching, Starlette app and page
  submit      `python -m trainer.submit`: training jobs on Vertex AI
  deploy      `python -m trainer.deploy`: the export on a Vertex AI endpoint
"""
