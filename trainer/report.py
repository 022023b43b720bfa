"""`python -m trainer.report`: a training run as a page to look at, `MODEL_DIR/report/index.html`.

    python -m trainer.report --model_dir model [--data_dir data]

The trainer writes the report itself at the end of a run (so a Vertex AI job leaves one in its
model directory too); this command rebuilds it from what a run left, local or gs://:
`metrics.json` (the final evaluation, required), `config.json`, the TensorBoard logs (the
curves), `misclassified.json` (drawings the final evaluation got wrong) and, from `--data_dir`
(default: the folder of the run's classes file, when it holds one), the pipeline's
`stats.json`. The page is self-contained: its figures are PNG files beside it, and it loads
nothing from the internet. A figure whose input is missing is left out, and the page says why.
"""

from __future__ import annotations

import datetime
import html
import json
import logging
import os
import sys

# TensorFlow's C++ start-up chatter would drown the one line this command logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from quickdraw import cli  # noqa: E402

REPORT_DIR = "report"
PAGE = "index.html"
METRICS_FILE = "metrics.json"
MISTAKES_FILE = "misclassified.json"
STATS_FILE = "stats.json"
MISTAKES_SHOWN = 36
CONFUSIONS_LISTED = 20
FIGURE_FILES = ("curves.png", "per_class.png", "confusion.png", "misclassified.png", "data.png")


def _read_json(path: str) -> dict | None:
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as file:
        return json.loads(file.read())


def _write(path: str, data: bytes | str) -> None:
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "wb") as file:
        file.write(data.encode() if isinstance(data, str) else data)


def default_data_dir(config: dict | None) -> str | None:
    """The folder of the run's classes file: where the pipeline wrote stats.json."""
    if not config or not config.get("classes_file"):
        return None
    return os.path.dirname(config["classes_file"]) or "."


def shown_mistakes(drawings: list[dict], confusion, labels: list[str], count: int) -> list[dict]:
    """Up to `count` misclassified drawings for the grid: one for each (true, guessed) pair,
    most frequent confusion first, before a second of any pair."""
    index = {name: position for position, name in enumerate(labels)}

    def frequency(drawing):
        true, guessed = index[drawing["true"]], index[drawing["guesses"][0][0]]
        return confusion[true][guessed]

    rounds: dict[tuple[str, str], int] = {}
    ranked = []
    for drawing in sorted(drawings, key=lambda drawing: -frequency(drawing)):
        pair = (drawing["true"], drawing["guesses"][0][0])
        rounds[pair] = rounds.get(pair, 0) + 1
        ranked.append((rounds[pair], -frequency(drawing), len(ranked), drawing))
    return [drawing for *_, drawing in sorted(ranked, key=lambda item: item[:3])[:count]]


def format_duration(seconds: float) -> str:
    """`1h02m`, `12m05s` or `42s`."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def build(model_dir: str, data_dir: str | None = None) -> str:
    """Writes `model_dir/report/` (the page and its figures); returns the page's path.

    Raises ValueError when `model_dir` holds no metrics.json, or `data_dir` no stats.json.
    """
    import tensorflow as tf

    from trainer import figures
    from trainer import history as history_lib

    metrics = _read_json(os.path.join(model_dir, METRICS_FILE))
    if metrics is None:
        raise ValueError(f"no {METRICS_FILE} in {model_dir}: train a model there first")
    config = _read_json(os.path.join(model_dir, "config.json"))
    stats = None
    if data_dir is not None:
        stats = _read_json(os.path.join(data_dir, STATS_FILE))
        if stats is None:
            raise ValueError(f"no {STATS_FILE} in --data_dir {data_dir}")
    else:
        guess = default_data_dir(config)
        stats = _read_json(os.path.join(guess, STATS_FILE)) if guess else None
        data_dir = guess if stats else None
    log_dir = (config or {}).get("log_dir") or os.path.join(model_dir, "logs")
    history = history_lib.read(log_dir)
    mistakes = _read_json(os.path.join(model_dir, MISTAKES_FILE))

    report_dir = os.path.join(model_dir, REPORT_DIR)
    tf.io.gfile.makedirs(report_dir)
    labels = metrics["confusion_matrix"]["labels"]
    confusion = metrics["confusion_matrix"]["counts"]
    sections, missing, written = [], [], set()

    def figure(name: str, title: str, png: bytes, caption: str) -> None:
        _write(os.path.join(report_dir, name), png)
        written.add(name)
        sections.append(_figure_html(name, title, caption))

    if history.scalars:
        evaluations = len(history.scalars.get("eval/top1_accuracy", []))
        figure(
            "curves.png",
            "Training curves",
            figures.training_curves(history.scalars),
            "The training loss and learning rate at each logged step, and eval top-1 and "
            f"top-3 at each of the {evaluations} evaluations. A loss and an accuracy still "
            "moving at the end say more steps would help; flat ones, that they would not.",
        )
    else:
        missing.append(f"training curves: no TensorBoard scalars in {log_dir}")
    figure(
        "per_class.png",
        "Accuracy by class",
        figures.per_class_accuracy(metrics["per_class_accuracy"], metrics["top1_accuracy"]),
        "Each class's top-1 accuracy on its own eval drawings, weakest first; the dashed "
        "line is the overall top-1.",
    )
    figure(
        "confusion.png",
        "Confusion matrix",
        figures.confusion_heatmap(confusion, labels, f"Confusion matrix at step {metrics['step']}"),
        "Rows are true classes, columns the model's first guess; each cell is the share of "
        "the row's eval drawings, on a square-root scale so that rare confusions show. Classes "
        "often confused with each other sit side by side; the table lists the most frequent "
        "mistakes.",
    )
    sections.append(_confusions_table(figures.top_confusions(confusion, labels, CONFUSIONS_LISTED)))
    if mistakes and mistakes.get("drawings"):
        shown = shown_mistakes(mistakes["drawings"], confusion, labels, MISTAKES_SHOWN)
        figure(
            "misclassified.png",
            "Misclassified drawings",
            figures.mistakes_grid(shown),
            f"{len(shown)} eval drawings the model got wrong at its final evaluation, one for "
            "each of the most frequent confusions first, drawn from the records' ink (strokes "
            "dark to light in the order drawn), with the model's three best guesses.",
        )
    elif mistakes is not None:
        missing.append("misclassified drawings: the final evaluation got every drawing right")
    else:
        missing.append(f"misclassified drawings: no {MISTAKES_FILE} (a run from before it)")
    if stats:
        figure(
            "data.png",
            "The data",
            figures.data_overview(stats),
            f"From the pipeline's {STATS_FILE} in {data_dir}: the drawings of each class in "
            "each split, and how many points the drawings have (the lines mark the median, "
            "90th and 99th percentiles).",
        )
    else:
        missing.append(f"the data: no {STATS_FILE} (give --data_dir)")
    # Figures of an earlier build that this one could not draw would mislead.
    for name in FIGURE_FILES:
        stale = os.path.join(report_dir, name)
        if name not in written and tf.io.gfile.exists(stale):
            tf.io.gfile.remove(stale)
    page = _page(model_dir, metrics, config, history, stats, sections, missing)
    path = os.path.join(report_dir, PAGE)
    _write(path, page)
    return path


def _figure_html(name: str, title: str, caption: str) -> str:
    return (
        f'<section><h2>{html.escape(title)}</h2><figure><a href="{name}">'
        f'<img src="{name}" alt="{html.escape(title)}"></a>'
        f"<figcaption>{html.escape(caption)}</figcaption></figure></section>"
    )


def _confusions_table(confusions: list[dict]) -> str:
    if not confusions:
        return "<section><h2>Most frequent confusions</h2><p>No mistakes.</p></section>"
    rows = "".join(
        f"<tr><td>{html.escape(item['true'])}</td><td>{html.escape(item['predicted'])}</td>"
        f"<td class=n>{item['drawings']}</td><td class=n>{item['share']:.0%}</td></tr>"
        for item in confusions
    )
    return (
        "<section><h2>Most frequent confusions</h2><table><thead><tr><th>true class</th>"
        "<th>guessed as</th><th>drawings</th><th>share of the true class</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _page(model_dir, metrics, config, history, stats, sections, missing) -> str:
    def percent(value):
        return f"{value:.1%}"

    steps = str(metrics["step"])
    if config and config.get("steps") and config["steps"] != metrics["step"]:
        steps += f" of {config['steps']}"
    headline = [
        ("top-1", percent(metrics["top1_accuracy"])),
        ("top-3", percent(metrics["top3_accuracy"])),
        ("eval loss", f"{metrics['loss']:.4f}"),
        ("eval drawings", f"{metrics['examples']:,}"),
        ("classes", str(len(metrics["confusion_matrix"]["labels"]))),
        ("steps", steps),
    ]
    if history.starts:
        starts = f" over {history.starts} starts" if history.starts > 1 else ""
        headline.append(("wall time", format_duration(history.wall_seconds) + starts))
    single = metrics.get("single_view")
    if single:
        headline.append(
            (
                "top-1 / top-3, each drawing alone",
                f"{percent(single['top1_accuracy'])} / {percent(single['top3_accuracy'])}",
            )
        )
    cards = "".join(
        f"<div class=card><div class=v>{html.escape(value)}</div>"
        f"<div class=k>{html.escape(name)}</div></div>"
        for name, value in headline
    )
    config_rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(json.dumps(value))}</td></tr>"
        for name, value in sorted((config or {}).items())
    )
    config_html = (
        f"<details><summary>The run's configuration</summary><table>{config_rows}</table></details>"
        if config
        else "<p>No config.json in the model directory.</p>"
    )
    notes = "".join(f"<li>{html.escape(line)}</li>" for line in missing)
    notes_html = f"<section><h2>Left out</h2><ul>{notes}</ul></section>" if notes else ""
    data_html = _data_summary(stats) if stats else ""
    generated = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Training report: {html.escape(model_dir)}</title>
<style>{_STYLE}</style></head>
<body><header><h1>Training report</h1>
<p class=sub>{html.escape(model_dir)} &middot; step {html.escape(str(metrics["step"]))} &middot;
written {html.escape(generated)}</p>
<div class=cards>{cards}</div>
<p>The run's files: <a href="../{METRICS_FILE}">{METRICS_FILE}</a> (every figure of the final
evaluation) and <a href="../config.json">config.json</a> (its flags).</p>
{config_html}</header>
<main>{"".join(sections)}{data_html}{notes_html}</main></body></html>
"""


def _data_summary(stats: dict) -> str:
    written = stats.get("written", {})
    items = [
        ("lines read", stats.get("lines_read", 0)),
        ("training drawings", written.get("train", 0)),
        ("eval drawings", written.get("eval", 0)),
        ("bad lines", stats.get("bad_lines_total", 0)),
        ("not selected", stats.get("not_selected_total", 0)),
        ("unaccounted lines", stats.get("unaccounted_lines", 0)),
    ]
    rows = "".join(f"<tr><td>{name}</td><td class=n>{value:,}</td></tr>" for name, value in items)
    return f"<section><h2>The pipeline's counts</h2><table>{rows}</table></section>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1em 2em;
  color: #222; }
h1 { margin-bottom: 0.2em; } .sub { color: #666; margin-top: 0; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8em; margin: 1em 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.6em 1em; min-width: 7em; }
.card .v { font-size: 1.5em; font-weight: 600; } .card .k { color: #666; font-size: 0.9em; }
figure { margin: 0; } img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; margin-top: 0.4em; max-width: 60em; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border-bottom: 1px solid #eee; padding: 0.2em 0.8em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
section { margin: 2em 0; } details { margin: 1em 0; }
"""


def make_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="python -m trainer.report",
        description="Write MODEL_DIR/report/index.html: a training run's figures as a page.",
    )
    parser.add_argument("--model_dir", required=True, help="a trained run's directory")
    parser.add_argument(
        "--data_dir",
        help="the pipeline's output folder, for its stats.json (default: the folder of the "
        "run's classes file, when it holds one)",
    )
    return parser


def main(argv=None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    from trainer import quiet_start
    from trainer.config import resolve_path

    quiet_start.import_tensorflow()  # without its start-up lines on a machine without a GPU
    data_dir = resolve_path(args.data_dir) if args.data_dir else None
    try:
        path = build(resolve_path(args.model_dir), data_dir)
    except ValueError as error:
        parser.error(str(error))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
