"""gs:// input and output through a real Cloud Storage server, and a Dataflow template.

Every test here talks to gcp-storage-emulator on 127.0.0.1 (`tests/support/gcs_emulator.py`),
loaded with real drawings from ../shared/quickdraw, and makes no other network call: a
guard refuses and records every connection outside loopback, in this process and in the
subprocess that builds the Dataflow template.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from pipeline.run import main, run
from quickdraw import schema
from tests.conftest import REPO, shared_quickdraw_or_skip
from tests.support.gcs_emulator import (
    GUARD_LOG_VARIABLE,
    PROJECT,
    GcsEmulator,
    NetworkGuard,
    guarded_emulator,
    write_network_guard,
)

BUCKET = "quickdraw"
# 25, 25 and 150 drawings; names with spaces, like the public bucket's.
CATEGORIES = ("The Eiffel Tower", "cat", "hot dog")
# Uploaded too: `--categories` must skip its file without opening it.
UNSELECTED = "zigzag"
TRAIN_PER_CLASS, EVAL_PER_CLASS, NUM_SHARDS = 20, 10, 2
FLAGS = [
    "--categories", ",".join(CATEGORIES),
    "--train_per_class", str(TRAIN_PER_CLASS),
    "--eval_per_class", str(EVAL_PER_CLASS),
    "--num_shards", str(NUM_SHARDS),
]  # fmt: skip


class Gcs:
    """The emulator of this module, with the network guard that watches it."""

    def __init__(self, emulator: GcsEmulator, guard: NetworkGuard):
        self.emulator = emulator
        self.guard = guard

    def download_tree(self, prefix: str, destination: Path) -> Path:
        """Copies every object under gs://BUCKET/prefix/ to `destination`."""
        client = self.emulator.client()
        for blob in client.list_blobs(BUCKET, prefix=prefix + "/"):
            path = destination / blob.name[len(prefix) + 1 :]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob.download_as_bytes())
        return destination


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """A running emulator, and the environment that points Beam at it, for this module."""
    with guarded_emulator(tmp_path_factory.mktemp("gcs"), BUCKET) as (emulator, guard):
        yield Gcs(emulator, guard)


@pytest.fixture(autouse=True)
def _no_network_call_outside_loopback(gcs):
    yield
    assert gcs.guard.attempts == [], f"network calls outside 127.0.0.1: {gcs.guard.attempts}"


@pytest.fixture(scope="module")
def drawings(gcs) -> Path:
    """Uploads the real category files to gs://BUCKET/simplified/; returns their folder."""
    simplified = shared_quickdraw_or_skip() / "simplified"
    for name in (*CATEGORIES, UNSELECTED):
        gcs.emulator.upload_file(BUCKET, f"simplified/{name}.ndjson", simplified / f"{name}.ndjson")
    return simplified


@pytest.fixture(scope="module")
def gcs_output(gcs, drawings, tmp_path_factory) -> Path:
    """One pipeline run from gs:// to gs://, downloaded to a local folder."""
    run(
        ["--input", f"gs://{BUCKET}/simplified/*.ndjson", "--output_dir", f"gs://{BUCKET}/out"]
        + FLAGS
    )
    return gcs.download_tree("out", tmp_path_factory.mktemp("gcs_out"))


def _guard_network(environment: dict[str, str], directory: Path) -> Path:
    """Makes a subprocess run with `environment` refuse every call outside loopback (see
    `write_network_guard`); returns the file that then lists them."""
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(write_network_guard(directory / "guard")), os.environ.get("PYTHONPATH")])
    )
    network_log = directory / "network_calls.log"
    environment[GUARD_LOG_VARIABLE] = str(network_log)
    return network_log


def _stats(output_dir: Path) -> dict:
    return json.loads((output_dir / "stats.json").read_text())


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_beam_uses_the_throwaway_credentials_without_refreshing_them(gcs):
    from apache_beam.internal.gcp import auth
    from apache_beam.options.pipeline_options import PipelineOptions

    credentials = auth.get_service_credentials(PipelineOptions([]))
    assert credentials is not None, "Beam found no credentials: it would retry for ~30 s"
    google_credentials = credentials.get_google_auth_credentials()
    assert google_credentials.token == "fake-access-token"
    assert google_credentials.valid  # so google-auth never asks oauth2.googleapis.com
    assert os.environ["GOOGLE_CLOUD_PROJECT"] == PROJECT


def test_gcs_output_has_the_tutorials_file_names_and_nothing_else(gcs_output):
    shards = {
        schema.shard_name(split, shard, NUM_SHARDS)
        for split in ("train", "eval")
        for shard in range(NUM_SHARDS)
    }
    assert "training.tfrecord-00001-of-00002" in shards
    expected = shards | {
        "training.tfrecord.classes",
        "eval.tfrecord.classes",
        "stats.json",
        "errors/bad_lines-00000-of-00001.jsonl",
    }
    # No write probe, no temporary files of Beam's file sinks left behind.
    assert set(_files(gcs_output)) == expected
    classes = "".join(name + "\n" for name in sorted(CATEGORIES))
    assert (gcs_output / "training.tfrecord.classes").read_text() == classes
    assert (gcs_output / "eval.tfrecord.classes").read_text() == classes
    assert (gcs_output / "errors" / "bad_lines-00000-of-00001.jsonl").read_bytes() == b""


def test_gcs_stats_account_for_every_line_read(gcs_output, drawings):
    stats = _stats(gcs_output)
    written = sum(stats["written"].values())
    assert stats["lines_read"] == written + stats["bad_lines_total"] + stats["not_selected_total"]
    assert stats["unaccounted_lines"] == 0
    # The unselected category's file was skipped unopened.
    assert stats["files_read"] == len(CATEGORIES)
    for name in CATEGORIES:
        lines = (drawings / f"{name}.ndjson").read_bytes().count(b"\n")
        train = min(TRAIN_PER_CLASS, lines)
        assert stats["per_category"][name] == {
            "train": train,
            "eval": min(EVAL_PER_CLASS, lines - train),
        }
    # hot dog has 150 drawings: reading stopped at its quota of 30 lines.
    assert stats["lines_read"] == 25 + 25 + TRAIN_PER_CLASS + EVAL_PER_CLASS
    assert stats["shortfall"] == {"The Eiffel Tower": {"eval": 5}, "cat": {"eval": 5}}
    assert stats["options"]["input"] == f"gs://{BUCKET}/simplified/*.ndjson"


def test_gcs_shards_parse_with_tensorflow(gcs_output):
    import tensorflow as tf

    stats = _stats(gcs_output)
    classes = (gcs_output / "training.tfrecord.classes").read_text().splitlines()
    key_ids = []
    for split, prefix in schema.SPLIT_FILE_PREFIXES.items():
        paths = sorted(str(p) for p in gcs_output.glob(prefix + "-*"))
        per_class = Counter()
        for serialized in tf.data.TFRecordDataset(paths).batch(256):
            parsed = schema.parse_examples(serialized)
            ink = parsed["ink"]  # (batch, None, 3)
            assert ink.shape[-1] == 3
            assert ink.row_lengths().numpy().tolist() == parsed[schema.LENGTHS].numpy().tolist()
            # Every drawing's last point ends a stroke.
            last_points = tf.gather(ink.flat_values, ink.row_limits() - 1)
            assert (last_points[:, 2].numpy() == 1.0).all()
            per_class.update(classes[i] for i in parsed["class_index"].numpy().tolist())
            key_ids += [k.decode() for k in parsed["key_id"].numpy().tolist()]
        assert per_class == Counter(
            {name: stats["per_category"][name][split] for name in CATEGORIES}
        )
    assert len(key_ids) == len(set(key_ids)) == sum(stats["written"].values())


def test_gcs_output_is_byte_identical_to_a_local_run(gcs_output, drawings, tmp_path):
    local_input = tmp_path / "simplified"
    local_input.mkdir()
    for name in (*CATEGORIES, UNSELECTED):
        shutil.copy(drawings / f"{name}.ndjson", local_input)
    local_output = tmp_path / "out"
    run(["--input", f"{local_input}/*.ndjson", "--output_dir", str(local_output)] + FLAGS)

    gcs_files, local_files = _files(gcs_output), _files(local_output)
    assert sorted(gcs_files) == sorted(local_files)
    for name, content in local_files.items():
        if name != "stats.json":
            assert gcs_files[name] == content, f"{name} differs between gs:// and local disk"
    gcs_stats, local_stats = _stats(gcs_output), _stats(local_output)
    for stats in (gcs_stats, local_stats):
        del stats["options"]["input"], stats["options"]["output_dir"]
    assert gcs_stats == local_stats


def test_gzipped_gcs_input_gives_the_bytes_of_the_plain_files(gcs, gcs_output, drawings, tmp_path):
    for name in (*CATEGORIES, UNSELECTED):
        zipped = tmp_path / f"{name}.ndjson.gz"
        zipped.write_bytes(gzip.compress((drawings / f"{name}.ndjson").read_bytes()))
        gcs.emulator.upload_file(BUCKET, f"simplified_gz/{name}.ndjson.gz", zipped)
    run(
        ["--input", f"gs://{BUCKET}/simplified_gz/*.ndjson.gz"]
        + ["--output_dir", f"gs://{BUCKET}/out_gz", *FLAGS]
    )
    gz_output = gcs.download_tree("out_gz", tmp_path / "out_gz")
    gz_files, plain_files = _files(gz_output), _files(gcs_output)
    assert sorted(gz_files) == sorted(plain_files)
    for name, content in plain_files.items():
        if name != "stats.json":
            assert gz_files[name] == content, f"{name} differs between .ndjson.gz and .ndjson"
    assert _stats(gz_output)["lines_read"] == _stats(gcs_output)["lines_read"]


@pytest.mark.parametrize(
    "input_pattern, output_dir, expected",
    [
        ("gs://quickdraw/nothing/*.ndjson", "gs://quickdraw/none", "matches no file"),
        ("gs://no-such-bucket/x/*.ndjson", "gs://quickdraw/none", "cannot list --input"),
    ],
)
def test_bad_gcs_locations_fail_fast_with_one_line(
    gcs, capsys, input_pattern, output_dir, expected
):
    assert main(["--input", input_pattern, "--output_dir", output_dir]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("python -m pipeline: error: ") and "\n" not in message
    assert expected in message
    assert gcs.emulator.list_names(BUCKET, prefix="none/") == []


def test_unwritable_gcs_output_fails_fast_with_one_line(gcs, drawings, capsys):
    args = ["--input", f"gs://{BUCKET}/simplified/*.ndjson", "--output_dir", "gs://no-bucket/o"]
    assert main(args + FLAGS) == 2
    message = capsys.readouterr().err.strip()
    assert "cannot write to --output_dir gs://no-bucket/o" in message and "\n" not in message


def test_bad_gcs_lines_land_in_gcs_errors(gcs, drawings):
    real = (drawings / "cat.ndjson").read_bytes().splitlines(keepends=True)
    truncated = real[6][:40]
    lines = real[:4] + [b'{"word": "cat", "key_id": \n'] + real[4:6] + [truncated]
    source = f"gs://{BUCKET}/broken/my drawings.ndjson"
    gcs.emulator.upload_bytes(BUCKET, "broken/my drawings.ndjson", b"".join(lines))

    run(["--input", f"gs://{BUCKET}/broken/*.ndjson", "--output_dir", f"gs://{BUCKET}/broken-out",
         "--split", "hash"])  # fmt: skip

    names = gcs.emulator.list_names(BUCKET, prefix="broken-out/errors/")
    assert names == ["broken-out/errors/bad_lines-00000-of-00001.jsonl"]
    errors = [json.loads(line) for line in gcs.emulator.download(BUCKET, names[0]).splitlines()]
    assert sorted((e["reason"], e["line_number"]) for e in errors) == [
        ("invalid_json", 5),
        ("truncated_line", 8),
    ]
    assert {e["source"] for e in errors} == {source}
    assert next(e for e in errors if e["reason"] == "truncated_line")["line"] == (
        truncated.decode()
    )
    stats = json.loads(gcs.emulator.download(BUCKET, "broken-out/stats.json"))
    assert stats["lines_read"] == len(lines)
    assert stats["bad_lines"] == {"invalid_json": 1, "truncated_line": 1}
    assert sum(stats["written"].values()) == len(lines) - 2 and stats["not_selected_total"] == 0


def test_a_machine_without_credentials_reads_gcs_anonymously_at_once(gcs_output, tmp_path):
    """`make all` on a machine never logged in to Google Cloud: the public bucket needs no
    credentials, and Beam's own search for them (five tries, ~35 s of tracebacks) is skipped."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT")
    }
    environment["CLOUDSDK_CONFIG"] = str(tmp_path / "gcloud")  # no gcloud login either
    network_log = _guard_network(environment, tmp_path)
    output = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline", "--input", f"gs://{BUCKET}/simplified/*.ndjson",
         "--output_dir", str(output), *FLAGS],
        capture_output=True, text=True, cwd=REPO, env=environment, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert not network_log.exists(), f"network calls: {network_log.read_text()}"
    assert "no Google Cloud credentials on this machine: reading gs:// anonymously" in (
        completed.stderr
    )
    assert "Retry with exponential backoff" not in completed.stderr
    assert "Traceback" not in completed.stderr
    # The rest of the log is the run's own: not a line per string annotation Beam reads.
    assert "Converting string literal type hint" not in completed.stderr
    assert "; bad: 0; not selected: 0\n" in completed.stderr
    assert _stats(output)["written"] == _stats(gcs_output)["written"]


def test_dataflow_template_is_built_offline_against_the_emulator(gcs, drawings, tmp_path):
    """Stages a Dataflow template as `make dataflow-template` does; no call leaves loopback.

    The build runs in a subprocess with `sitecustomize.py` refusing and logging every
    connection outside 127.0.0.1. (A loopback-only network namespace would not do here: the
    emulator listens on this namespace's loopback, and Beam catches and logs some failed
    calls, which would then pass unnoticed.)
    """
    environment = dict(os.environ)
    network_log = _guard_network(environment, tmp_path)
    template = f"gs://{BUCKET}/templates/quickdraw"
    setup_file = str(REPO / "setup.py")
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline",
         "--input", f"gs://{BUCKET}/simplified/*.ndjson",
         "--output_dir", f"gs://{BUCKET}/dataflow-out", "--split", "hash", *FLAGS,
         "--runner", "DataflowRunner", "--project", PROJECT, "--region", "us-central1",
         "--temp_location", f"gs://{BUCKET}/tmp",
         "--staging_location", f"gs://{BUCKET}/staging",
         "--template_location", template,
         "--setup_file", setup_file, "--experiments", "use_runner_v2"],
        capture_output=True, text=True, cwd=REPO, env=environment, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert not network_log.exists(), f"network calls: {network_log.read_text()}"
    assert f"template staged at {template}" in completed.stderr

    description = json.loads(gcs.emulator.download(BUCKET, "templates/quickdraw"))
    options = description["environment"]["sdkPipelineOptions"]["options"]
    staging = options["staging_location"]
    assert staging.startswith(f"gs://{BUCKET}/staging/")
    assert options["setup_file"] == setup_file
    assert options["template_location"] == template
    assert options["pipelineUrl"] == f"{staging}/pipeline.pb"
    packages = {
        package["name"]: package["location"]
        for pool in description["environment"]["workerPools"]
        for package in pool["packages"]
    }
    staged_prefix = staging[len("gs://") :]
    assert packages["workflow.tar.gz"] == f"storage.googleapis.com/{staged_prefix}/workflow.tar.gz"

    # The staged files are in the emulator: the sdist of this package, and our pipeline.
    staged = staging[len(f"gs://{BUCKET}/") :]
    with tarfile.open(
        fileobj=io.BytesIO(gcs.emulator.download(BUCKET, f"{staged}/workflow.tar.gz"))
    ) as sdist:
        members = sdist.getnames()
        pkg_info = next(name for name in members if name.count("/") == 1
                        and name.endswith("/PKG-INFO"))  # fmt: skip
        assert b"Name: quickdraw-sketch" in sdist.extractfile(pkg_info).read()
    for path in ("setup.py", "pipeline/run.py", "pipeline/public_categories.txt"):
        assert any(name.endswith("/" + path) for name in members), f"{path} not in the sdist"

    from apache_beam.portability.api import beam_runner_api_pb2

    proto = beam_runner_api_pb2.Pipeline.FromString(
        gcs.emulator.download(BUCKET, f"{staged}/pipeline.pb")
    )
    labels = {transform.unique_name for transform in proto.components.transforms.values()}
    assert {"ReadDrawings", "WriteShards", "WriteMetadata"} <= labels
    # Building a template runs nothing.
    assert gcs.emulator.list_names(BUCKET, prefix="dataflow-out/") == []
