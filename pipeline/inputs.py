"""Checks and plans done before the pipeline starts: input files, categories, output dir.

Everything here fails fast with a `UsageError` naming what to do, before any drawing is
read, so a typo costs a second rather than a Dataflow job.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import posixpath
from importlib import resources

import google.auth
from apache_beam.internal.gcp import auth as beam_auth
from apache_beam.io.filesystems import FileSystems

from pipeline.config import PipelineConfig
from quickdraw import schema
from quickdraw.cli import UsageError

NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz")


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One ndjson file to read. `index` orders files by path, for `--split=first`."""

    index: int
    path: str
    # The category the file is named after, when it is a public category: such a file
    # holds that category only (the public bucket's layout). None for any other file,
    # which may mix many words.
    category: str | None


def public_categories() -> frozenset[str]:
    """The 345 categories of the public Quick, Draw! dataset."""
    text = resources.files("pipeline").joinpath("public_categories.txt").read_text("utf-8")
    return frozenset(line for line in text.splitlines() if line)


def file_stem(path: str) -> str:
    """`gs://b/simplified/hot dog.ndjson.gz` -> `hot dog`: the category a file is named after."""
    name = posixpath.basename(path)
    for suffix in NDJSON_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_gcs_anonymously_without_credentials(*paths: str) -> None:
    """Lets Beam read gs:// at once, anonymously, when this machine has no Google credentials.

    Without Application Default Credentials, Beam's GCS client looks for them five times
    over about 35 s, logging a traceback each time, before it goes on anonymously. The
    public bucket (gs://quickdraw_dataset) needs no credentials, so `make all` on a machine
    never logged in to Google Cloud would start with half a minute of tracebacks. One look
    here (about 2 s) settles it; a private bucket then fails with its own "403"/"401".
    """
    if not any(path.startswith("gs://") for path in paths):
        return
    try:
        google.auth.default()
        return
    except google.auth.exceptions.DefaultCredentialsError:
        pass
    logging.info(
        "no Google Cloud credentials on this machine: reading gs:// anonymously, as public "
        "buckets allow (for a private bucket, run `gcloud auth application-default login`)"
    )
    # Beam has no option for this; it caches the outcome of its own search here, once per
    # process, and an anonymous client is what it would end up with.
    with beam_auth._Credentials._credentials_lock:
        beam_auth._Credentials._credentials_init = True
        beam_auth._Credentials._credentials = None


# Beam reads a gs:// object 16 MiB at a time. With --split=first a category's file is read
# only as far as its quota, at ~500 bytes a drawing (the simplified format's average line):
# `make all`'s 150 drawings of a category are ~75 KB of a ~60 MB file, for which a 16 MiB
# read would download 16 MiB. A buffer of ~1 KiB per drawing of the quota (at least 1 MiB,
# at most Beam's 16 MiB) reads what is needed in one or two requests.
GCS_READ_BUFFER_MIN = 1 << 20
GCS_READ_BUFFER_MAX = 16 << 20
GCS_READ_BYTES_PER_DRAWING = 1 << 10


def read_buffer_for(drawings: int) -> int:
    """The gs:// read buffer for reading the first `drawings` drawings of a file."""
    wanted = drawings * GCS_READ_BYTES_PER_DRAWING
    return min(GCS_READ_BUFFER_MAX, max(GCS_READ_BUFFER_MIN, wanted))


def gcs_read_buffer_bytes(config: PipelineConfig) -> int | None:
    """The gs:// read buffer for this run's quotas, or None for Beam's own (whole files)."""
    return read_buffer_for(config.per_class_quota) if config.split == "first" else None


def list_input_files(config: PipelineConfig) -> list[InputFile]:
    """The files the pipeline reads, sorted by path, minus those of unwanted categories."""
    try:
        matches = FileSystems.match([config.input])[0].metadata_list
    except Exception as error:  # noqa: BLE001 - Beam raises many kinds for a bad location
        raise UsageError(f"cannot list --input {config.input}: {error}") from None
    paths = sorted(metadata.path for metadata in matches)
    if not paths:
        raise UsageError(
            f"--input {config.input} matches no file: check the pattern, or quote it so the "
            "shell does not expand it"
        )
    known = public_categories()
    files = [
        InputFile(index, path, file_stem(path) if file_stem(path) in known else None)
        for index, path in enumerate(paths)
    ]
    if config.categories is None:
        return files
    _check_categories(config.categories, files, known)
    wanted = set(config.categories)
    return [f for f in files if f.category is None or f.category in wanted]


def _check_categories(
    requested: tuple[str, ...], files: list[InputFile], known: frozenset[str]
) -> None:
    found = {f.category for f in files if f.category is not None}
    mixed = any(f.category is None for f in files)
    for name in requested:
        if name in found:
            continue
        close = difflib.get_close_matches(name, sorted(found | known), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        if not mixed:
            raise UsageError(f"unknown category {name!r} in --categories{hint}")
        # Files named otherwise may hold any word: only the data can tell.
        logging.warning(
            "category %r has no file of its own; looking for it in every file%s", name, hint
        )


def check_output_dir(config: PipelineConfig) -> None:
    """Refuses an output dir that holds shards (unless --overwrite) or that is not writable."""
    existing = _existing_outputs(config.output_dir)
    if existing and not config.overwrite:
        raise UsageError(
            f"--output_dir {config.output_dir} already holds {len(existing)} output files "
            f"(e.g. {posixpath.basename(existing[0])}); pass --overwrite to replace them, or "
            "choose another folder"
        )
    probe = posixpath.join(config.output_dir, ".write_probe")
    try:
        if not config.output_dir.startswith("gs://") and not FileSystems.exists(config.output_dir):
            FileSystems.mkdirs(config.output_dir)
        with FileSystems.create(probe) as handle:
            handle.write(b"ok")
        FileSystems.delete([probe])
    except Exception as error:  # noqa: BLE001
        raise UsageError(
            f"cannot write to --output_dir {config.output_dir}: {error}; check the path and "
            "your permissions"
        ) from None
    if existing:
        logging.info("--overwrite: deleting %d files of an earlier run", len(existing))
        FileSystems.delete(existing)


def _existing_outputs(output_dir: str) -> list[str]:
    patterns = [posixpath.join(output_dir, p + "*") for p in schema.SPLIT_FILE_PREFIXES.values()]
    patterns += [posixpath.join(output_dir, "stats.json"), posixpath.join(output_dir, "errors/*")]
    try:
        results = FileSystems.match(patterns)
    except Exception:  # noqa: BLE001 - a missing folder simply holds nothing
        return []
    return sorted(m.path for result in results for m in result.metadata_list)
