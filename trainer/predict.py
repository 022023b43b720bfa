"""`python -m trainer.predict`: classify Quick, Draw! drawings with an exported model.

    python -m trainer.predict --model_dir model [--top_k 3] drawings.ndjson [gs://...]

Reads ndjson, one drawing per line, in the simplified or the raw format (strokes of
[xs, ys, times], simplified first exactly as the pipeline does; local paths or gs://; `.gz`
too), and prints one JSON line per drawing, in input order:

    {"key_id": "...", "word": "cat", "top_k": [{"label": "cat", "probability": 0.91}, ...]}

`word` appears when the line has one. When any drawing has a word, a last line sums up how
often the model agreed with it: `{"summary": {"drawings": N, "top1": ..., "top3": ...}}`; when
drawings carry the dataset's `recognized` field (whether the game's own model recognized them),
the summary also holds the same three figures under `recognized` and `unrecognized`.
Lines that are not valid drawings are reported on stderr with their reason (the pipeline's
own checks, `quickdraw.drawings`) and skipped. Every `--progress_every` seconds a line on
stderr says how far it got (files, drawings, rate); stdout holds only the JSON lines. Only
`model_dir/export/` is read.
"""

from __future__ import annotations

import gzip
import logging
import os
import sys
import time

# TensorFlow's C++ start-up chatter would mix with the warnings about bad lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from quickdraw import cli  # noqa: E402
from quickdraw import drawings as drawings_lib  # noqa: E402

LINES_PER_CHUNK = 512
MAX_POINTS = 100000  # longer drawings are reported as bad lines (the pipeline's check)
# Lines without a word (a drawing to classify, not a labelled one) get this one, which no
# category has, to pass the pipeline's checks; the output leaves it out.
_NO_WORD = "\x00"


def make_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="python -m trainer.predict",
        description="Classify ndjson drawings with model_dir/export/.",
    )
    parser.add_argument("--model_dir", required=True, help="holds export/ (or is it)")
    parser.add_argument("--top_k", type=cli.positive_int, default=3, help="classes per drawing")
    parser.add_argument(
        "--batch_size", type=cli.positive_int, default=64, help="drawings per model call"
    )
    parser.add_argument(
        "--single_view",
        action="store_true",
        help="classify each drawing alone, not averaged over the model's --test_time_views "
        "views: faster, a little less accurate (exports with views only)",
    )
    parser.add_argument(
        "--progress_every",
        type=cli.seconds,
        default=10.0,
        help="seconds between progress lines on stderr, 0 for none (%(default)s)",
    )
    parser.add_argument("files", nargs="+", help="ndjson, simplified or raw format, local or gs://")
    return parser


class Progress:
    """Logs how far the classification got, at most every `interval` seconds (0: never)."""

    def __init__(self, files: int, interval: float):
        self.files = files
        self.interval = interval
        self.file = 0
        self.drawings = self.bad = 0
        self._started = self._logged = time.monotonic()

    def next_file(self) -> None:
        self.file += 1

    def add(self, drawings: int, bad: int) -> None:
        self.drawings += drawings
        self.bad += bad
        now = time.monotonic()
        if self.interval and now - self._logged >= self.interval:
            self._logged = now
            logging.info(self.line(now - self._started))

    def line(self, seconds: float) -> str:
        rate = self.drawings / seconds if seconds > 0 else 0.0
        return (
            f"progress: file {self.file} of {self.files}, {self.drawings:,} drawings "
            f"classified ({rate:,.0f}/s), {self.bad:,} bad lines; {seconds:.0f} s"
        )


class Classifier:
    """The exported serving signature, with its class names."""

    def __init__(self, export_dir: str, signature: str | None = None):
        import tensorflow as tf

        from trainer import export

        loaded = tf.saved_model.load(export_dir)
        self._loaded = loaded  # keeps the signature's variables alive
        signature = signature or export.SIGNATURE
        if signature not in loaded.signatures:
            raise KeyError(signature)
        self._serve = loaded.signatures[signature]
        self.classes = [name.decode() for name in loaded.class_names.numpy()]

    def probabilities(self, points: list[np.ndarray], batch_size: int) -> np.ndarray:
        """(drawings, classes) probabilities of drawings given as absolute (n, 3) points."""
        from trainer import export

        result = np.zeros((len(points), len(self.classes)), np.float32)
        # Drawings of similar length together: less padding, same predictions.
        order = np.argsort([len(p) for p in points], kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch, lengths = export.pad_points([points[row] for row in rows])
            result[rows] = self._serve(points=batch, lengths=lengths)["probabilities"].numpy()
        return result


def _numbered_chunks(file, size: int, path: str):
    """Chunks of (line number, line) from a binary file, lazily. A damaged .gz file ends at
    the damage, with a warning: the lines before it are classified."""
    chunk, number = [], 0
    try:
        for number, line in enumerate(file, 1):
            chunk.append((number, line))
            if len(chunk) == size:
                yield chunk
                chunk = []
    except drawings_lib.GZIP_DAMAGE as error:
        logging.warning("%s: the file cannot be read after line %d: %s", path, number, error)
    if chunk:
        yield chunk


def _with_placeholder_word(line: bytes) -> tuple[bytes, dict | None]:
    """The line, with a placeholder word if it is an object without one, and its record."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return line, None  # the pipeline's checks name the reason
    if isinstance(record, dict) and "word" not in record:
        record["word"] = _NO_WORD
        return orjson.dumps(record), record
    return line, record if isinstance(record, dict) else None


class _Tally:
    """Drawings counted and how many the model ranked first, and in its first three."""

    def __init__(self):
        self.drawings = self.top1 = self.top3 = 0

    def add(self, word: str, ranked: list[str]) -> None:
        self.drawings += 1
        self.top1 += ranked[:1] == [word]
        self.top3 += word in ranked[:3]

    def as_dict(self) -> dict:
        return {
            "drawings": self.drawings,
            "top1": self.top1 / self.drawings,
            "top3": self.top3 / self.drawings,
        }


class Summary:
    """How often the model's ranking agreed with the drawings' words: over all of them, and
    apart over those the game's own model recognized and those it did not, for the drawings
    that carry the dataset's `recognized` field."""

    def __init__(self):
        self.all = _Tally()
        self.by_recognized: dict[bool, _Tally] = {}
        self.unknown_words: dict[str, int] = {}  # words that are none of the model's classes

    def add(self, word: str, ranked: list[str], recognized: bool | None = None) -> None:
        if word not in ranked:
            self.unknown_words[word] = self.unknown_words.get(word, 0) + 1
        self.all.add(word, ranked)
        if recognized is not None:
            self.by_recognized.setdefault(recognized, _Tally()).add(word, ranked)

    def as_dict(self) -> dict:
        result = self.all.as_dict()
        for recognized, name in ((True, "recognized"), (False, "unrecognized")):
            if recognized in self.by_recognized:
                result[name] = self.by_recognized[recognized].as_dict()
        return result


def classify_file(path, classifier, top_k, batch_size, summary, out, progress=None) -> int:
    """Writes one JSON line per good drawing of `path` to `out`; returns the bad lines.
    `progress`, when given, hears of each chunk of lines classified."""
    import tensorflow as tf

    from trainer.config import resolve_path

    bad_count = 0
    with tf.io.gfile.GFile(resolve_path(path), "rb") as raw:
        # `.ndjson.gz`, as the pipeline reads it too.
        file = gzip.GzipFile(fileobj=raw, mode="rb") if path.endswith(".gz") else raw
        for chunk in _numbered_chunks(file, LINES_PER_CHUNK, path):
            records = {}
            lines = []
            for number, line in chunk:
                line, record = _with_placeholder_word(line)
                records[number] = record
                lines.append((number, line))
            batch, bad = drawings_lib.convert_lines(lines, MAX_POINTS)
            for bad_line in bad:
                reason = drawings_lib.REASONS[bad_line.reason]
                logging.warning(
                    "%s:%d: %s (%s)", path, bad_line.line_number, bad_line.reason, reason
                )
            bad_count += len(bad)
            # The pipeline's own points: raw drawings come out simplified.
            points = [batch.points_of(index) for index in range(len(batch))]
            probabilities = classifier.probabilities(points, batch_size)
            for index, word in enumerate(batch.words):
                ranked = np.argsort(-probabilities[index], kind="stable")
                labels = [classifier.classes[i] for i in ranked]
                line = {"key_id": batch.key_ids[index]}
                if word != _NO_WORD:
                    line["word"] = word
                    recognized = records[int(batch.line_numbers[index])].get("recognized")
                    summary.add(word, labels, recognized if isinstance(recognized, bool) else None)
                line["top_k"] = [
                    {"label": labels[k], "probability": round(float(probabilities[index, i]), 6)}
                    for k, i in enumerate(ranked[:top_k])
                ]
                out.write(orjson.dumps(line).decode() + "\n")
            if progress is not None:
                progress.add(len(batch.words), len(bad))
    return bad_count


def main(argv=None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    from trainer import quiet_start

    tf = quiet_start.import_tensorflow()
    from trainer import export
    from trainer.config import resolve_path

    export_dir = export.export_dir_of(resolve_path(args.model_dir))
    if not tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb")):
        parser.error(f"no exported model in {export_dir}")
    for path in args.files:
        if not tf.io.gfile.exists(resolve_path(path)):
            parser.error(f"no such file: {path}")
    signature = export.SINGLE_VIEW_SIGNATURE if args.single_view else export.SIGNATURE
    try:
        classifier = Classifier(export_dir, signature)
    except KeyError:
        parser.error(
            f"--single_view: {export_dir} has no {signature!r} signature (it serves one view "
            "already: it was trained with --test_time_views 1); leave the flag out"
        )
    if args.top_k > len(classifier.classes):
        parser.error(f"--top_k {args.top_k} exceeds the model's {len(classifier.classes)} classes")

    summary = Summary()
    progress = Progress(len(args.files), args.progress_every)
    bad = 0
    for path in args.files:
        progress.next_file()
        bad += classify_file(
            path, classifier, args.top_k, args.batch_size, summary, sys.stdout, progress
        )
    if summary.all.drawings:
        sys.stdout.write(orjson.dumps({"summary": summary.as_dict()}).decode() + "\n")
    if summary.unknown_words:
        logging.warning(
            "%d drawing(s) have a word the model does not know, counted as misses: %s",
            sum(summary.unknown_words.values()),
            ", ".join(sorted(summary.unknown_words)),
        )
    if bad:
        logging.warning("%d bad line(s) skipped", bad)
    return 0


if __name__ == "__main__":
    sys.exit(main())
