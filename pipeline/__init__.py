"""The Beam pipeline: Quick, Draw! ndjson (simplified or raw ink) to shuffled, sharded TFRecords.

Modules, in the order a reader meets them:

  config         flags -> one frozen PipelineConfig (`python -m pipeline --help`)
  inputs         checks before any work: input files, categories, the output folder
  run            run(argv): wires the transforms below and runs them (FnApiRunner or Dataflow)
  reading        ReadDrawings: files -> batches of selected drawings, bad lines, counts
  sharding       AssignShards: each drawing's split and shard (`quickdraw.splits`), packed
  chunks         drawings packed for the shuffle between the two
  writing        WriteShards, WriteErrors, and the classes files and stats.json
  stats          the counts behind stats.json, and the rule that every line is accounted for
  progress       progress lines while a local run works
  sample         `python -m pipeline.sample`: drawings of each class training never saw
  flex_template  `python -m pipeline.flex_template`: the pipeline as a Dataflow Flex template

The line and ink math they call lives in the core, `quickdraw`.
"""
