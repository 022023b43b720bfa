"""The Quick, Draw! classifier: conv1d + stacked bidirectional LSTM on the pipeline's ink
(with `--raster`, beside a 2-D convolutional branch on the ink drawn as an image).

Modules, in the order a reader meets them:

  config      flags -> one frozen Config (`python -m trainer --help`)
  quiet_start TensorFlow's start without its start-up chatter on a machine without a GPU
  checks      bad input as one line that says what to do: files, classes, records
  data        tf.data from TFRecord globs, bucketed by length
  augment     random distortions of training batches
  tf_ink      the core's ink math (`quickdraw.ink`) in TensorFlow, on padded batches
  layers      the model's own Keras layers (masks, extra channels, masked sums, batch norm)
  raster      `--raster`'s image branch: the ink drawn as an image, and its convolutions
  model       build_model(config, num_classes) -> keras.Model, wired once for training and
              serving
  views       test-time views, averaged in evaluation and serving
  optimizer   Adam on a warmup schedule, and the moving average of the weights
  replicas    sums across replicas and workers
  cluster     this process's place in TF_CONFIG, the distribution strategy, lost workers
  train_step  the training step: each branch's loss, clipped gradients, one update
  checkpoints restoring only the model they were written for; stopping at a signal
  train       the run top to bottom: set up, train, finish (`train_and_evaluate`)
  evaluate    loss, top-1/top-3, per-class accuracy, confusion matrix -> metrics.json
  summaries   TensorBoard scalars and images (the confusion matrix at each evaluation)
  report      `python -m trainer.report`: MODEL_DIR/report/index.html, the run as a page
  figures     the report's figures (matplotlib), from metrics, logs and stats.json
  history     the run's scalars read back from its TensorBoard logs
  render      drawings as pictures: strokes of absolute points on matplotlib axes
  export      the SavedModel that takes absolute points
  predict     `python -m trainer.predict`: classify ndjson drawings with the export
  serve       `python -m trainer.serve`: the export over HTTP (Vertex AI's API) and a page
  serving/    the server's request protocol, batching, Starlette app and page
  vertex      what submit and deploy share about Vertex AI
  submit      `python -m trainer.submit`: training jobs on Vertex AI
  deploy      `python -m trainer.deploy`: the export on a Vertex AI endpoint
"""
