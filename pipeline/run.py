"""`python -m pipeline`: Quick, Draw! ndjson to shuffled, sharded TFRecords.

    python -m pipeline --input 'data/*.ndjson' --output_dir out [options] [Beam options]

`run(argv)` splits the pipeline's flags from Beam's, checks inputs and outputs before any
work, builds the pipeline, runs it and logs a summary. Locally it runs on Beam's
FnApiRunner (never the Prism runner, which the DirectRunner would first download);
`--runner=DataflowRunner` runs it on Dataflow.
"""

from __future__ import annotations

import logging
import os
import posixpath
import sys
import tempfile
from pathlib import Path

import apache_beam as beam
import orjson
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
)
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipeline import inputs, progress
from pipeline.config import PipelineConfig, parse_args
from pipeline.reading import ReadDrawings
from pipeline.sharding import AssignShards
from pipeline.writing import (
    MergeCountsFn,
    WriteErrors,
    WriteShards,
    class_list,
    write_outputs_metadata,
)
from quickdraw.cli import UsageError

LOCAL_RUNNERS = (None, "DirectRunner", "FnApiRunner")
# Set in the Flex template's launcher image: the file Google's launcher runs.
FLEX_LAUNCHER_VARIABLE = "FLEX_TEMPLATE_PYTHON_PY_FILE"


def build(
    pipeline: beam.Pipeline,
    config: PipelineConfig,
    files: list[inputs.InputFile],
    progress_dir: str | None = None,
):
    """Adds the whole job to `pipeline`; returns the PCollection of the final stats. With a
    `progress_dir` the transforms count their work there (`pipeline.progress`)."""
    read = (
        pipeline
        | "ListFiles" >> beam.Create(files)
        | "ReadDrawings" >> ReadDrawings(config, progress_dir)
    )
    shards = read.drawings | "AssignShards" >> AssignShards(config)
    counts = (
        (read.stats, shards.stats)
        | "AllCounts" >> beam.Flatten()
        | "MergeCounts" >> beam.CombineGlobally(MergeCountsFn())
    )
    classes = counts | "ListClasses" >> beam.Map(class_list, config)
    _ = shards.chunks | "WriteShards" >> WriteShards(config, classes, progress_dir)
    _ = read.bad_lines | "WriteErrors" >> WriteErrors(config.output_dir)
    return counts | "WriteMetadata" >> beam.FlatMap(
        write_outputs_metadata, beam.pvalue.AsSingleton(classes), config
    )


def _runner_and_options(beam_args: list[str], config: PipelineConfig):
    options = PipelineOptions(beam_args)
    cloud = options.view_as(GoogleCloudOptions)
    if cloud.gcs_read_buffer_size_bytes is None:
        cloud.gcs_read_buffer_size_bytes = inputs.gcs_read_buffer_bytes(config)
    runner = options.view_as(StandardOptions).runner
    if runner in LOCAL_RUNNERS:
        return FnApiRunner(), options
    if runner == "DataflowRunner":
        setup = options.view_as(SetupOptions)
        default_setup = Path(__file__).resolve().parent.parent / "setup.py"
        if not setup.setup_file and default_setup.exists():
            # Workers install this package (and its base requirements) from setup.py.
            setup.setup_file = str(default_setup)
        if setup.save_main_session is None:
            # Workers import the package installed from --setup_file; nothing to pickle.
            setup.save_main_session = False
        if not options.view_as(GoogleCloudOptions).project:
            raise UsageError(
                "--runner=DataflowRunner needs --project (and --region, --temp_location gs://...)"
            )
    return runner, options


def _log_summary(config: PipelineConfig) -> None:
    path = posixpath.join(config.output_dir, "stats.json")
    with FileSystems.open(path) as handle:
        report = orjson.loads(handle.read())
    logging.info(
        "written: %d training and %d eval drawings in %d classes, %d shards each",
        report["written"]["train"],
        report["written"]["eval"],
        report["classes"],
        config.num_shards,
    )
    logging.info(
        "lines read: %d; bad: %d%s; not selected: %d%s",
        report["lines_read"],
        report["bad_lines_total"],
        f" {report['bad_lines']}" if report["bad_lines"] else "",
        report["not_selected_total"],
        f" {report['not_selected']}" if report["not_selected"] else "",
    )
    if report.get("shortfall"):
        logging.warning(
            "%d categories have fewer drawings than asked: %s",
            len(report["shortfall"]),
            report["shortfall"],
        )
    if report["damaged_files"]:
        logging.warning(
            "%d damaged file(s), read up to the damage: %s",
            len(report["damaged_files"]),
            report["damaged_files"],
        )
    if report["bad_lines_total"] or report["empty_files"] or report["damaged_files"]:
        logging.info("bad lines and their reasons: %s", posixpath.join(config.output_dir, "errors"))
    logging.info("output: %s (stats in stats.json)", config.output_dir)


def run(argv: list[str] | None = None) -> beam.runners.runner.PipelineResult:
    """Parses flags, checks inputs and outputs, and runs the pipeline to completion.

    Returns the pipeline's result, whose metrics hold the counters (lines read, bad lines
    by reason, drawings written per split).
    """
    config, beam_args = parse_args(argv)
    return run_config(config, beam_args)


def run_config(config: PipelineConfig, beam_args: list[str]) -> beam.runners.runner.PipelineResult:
    """`run` once the flags are parsed."""
    runner, options = _runner_and_options(beam_args, config)
    if isinstance(runner, FnApiRunner):  # a Dataflow job needs credentials anyway
        inputs.read_gcs_anonymously_without_credentials(config.input, config.output_dir)
    files = inputs.list_input_files(config)
    inputs.check_output_dir(config)
    logging.info(
        "reading %d files matching %s (first: %s, last: %s)",
        len(files),
        config.input,
        files[0].path if files else "-",
        files[-1].path if files else "-",
    )
    logging.info("options: %s", config.to_json())
    if isinstance(runner, FnApiRunner) and config.progress_every:
        with tempfile.TemporaryDirectory(prefix="pipeline-progress-") as progress_dir:
            with progress.Reporter(progress_dir, len(files), config.progress_every):
                result = _run_pipeline(runner, options, config, files, progress_dir)
    else:
        result = _run_pipeline(runner, options, config, files)
    if options.view_as(GoogleCloudOptions).template_location:
        logging.info("template staged at %s", options.view_as(GoogleCloudOptions).template_location)
        return result
    if runner == "DataflowRunner" and FLEX_LAUNCHER_VARIABLE in os.environ:
        # In the Flex template's launcher (Dockerfile.flex sets the variable), the job
        # is handed to Dataflow and the launcher VM's work is done: waiting for the whole
        # conversion there would only hold the VM, and could outlast its timeout.
        logging.info("Dataflow job submitted from the Flex template launcher")
        return result
    result.wait_until_finish()
    _log_summary(config)
    return result


def _run_pipeline(runner, options, config, files, progress_dir=None):
    """Builds and starts the pipeline; the local runner returns once it has finished, a
    Dataflow job once it is submitted."""
    pipeline = beam.Pipeline(runner=runner, options=options)
    build(pipeline, config, files, progress_dir)
    return pipeline.run()


def main(argv: list[str] | None = None) -> int:
    try:
        config, beam_args = parse_args(argv)
    except UsageError as error:
        print(f"python -m pipeline: error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(message)s")
    # Beam logs a line for each annotation it reads as a string (all of ours are strings:
    # `from __future__ import annotations`), 17 of a local run's 25 lines; none is news.
    logging.getLogger("apache_beam.typehints.native_type_compatibility").setLevel(logging.WARNING)
    try:
        run_config(config, beam_args)
    except UsageError as error:
        print(f"python -m pipeline: error: {error}", file=sys.stderr)
        return 2
    return 0
