"""The training report's figures, drawn with matplotlib's Agg backend (no display needed).

Each function takes plain data (lists, dicts, numpy arrays: what metrics.json, the TensorBoard
logs and stats.json hold) and returns a PNG as bytes; each figure has a title and labelled
axes. The page (`trainer.report`) puts a sentence under each saying what it shows.
"""

from __future__ import annotations

import io

import numpy as np

# Above this many classes a figure leaves out per-class labels that would overlap, or shows
# only the weakest classes by name.
LABELLED_CLASSES = 60
WEAKEST_SHOWN = 40
DPI = 100


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    from matplotlib import pyplot

    return pyplot


def png_bytes(figure) -> bytes:
    """The figure as PNG bytes; the figure is closed (its memory freed)."""
    pyplot = _pyplot()
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        pyplot.close(figure)
    return buffer.getvalue()


# --- Training curves ----------------------------------------------------------------------


def training_curves(scalars: dict[str, list[tuple[int, float]]]) -> bytes:
    """Loss and learning rate by step, and eval top-1 and top-3 at each evaluation.

    `scalars` maps TensorBoard tags (`train/loss`, `train/learning_rate`,
    `eval/top1_accuracy`, `eval/top3_accuracy`) to (step, value) pairs in step order.
    """
    pyplot = _pyplot()
    figure, (loss_axes, rate_axes, eval_axes) = pyplot.subplots(1, 3, figsize=(15, 4.2))
    figure.suptitle("Training curves")

    def plot(axes, tag, label, scale=1.0, **style):
        points = scalars.get(tag, [])
        if points:
            steps, values = zip(*points)
            axes.plot(steps, np.asarray(values) * scale, label=label, **style)

    plot(loss_axes, "train/loss", "training loss")
    loss_axes.set(title="Training loss", xlabel="step", ylabel="cross-entropy (mean per drawing)")
    plot(rate_axes, "train/learning_rate", "learning rate", color="tab:orange")
    rate_axes.set(title="Learning rate", xlabel="step", ylabel="learning rate")
    rate_axes.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    plot(eval_axes, "eval/top1_accuracy", "top-1", 100, marker="o")
    plot(eval_axes, "eval/top3_accuracy", "top-3", 100, marker="s")
    eval_axes.set(title="Eval accuracy at each evaluation", xlabel="step", ylabel="accuracy (%)")
    eval_axes.set_ylim(0, 100)
    eval_axes.legend(loc="lower right")
    for axes in (loss_axes, rate_axes, eval_axes):
        axes.grid(alpha=0.3)
        if not axes.lines:
            axes.text(0.5, 0.5, "not logged", ha="center", va="center", transform=axes.transAxes)
    figure.tight_layout()
    return png_bytes(figure)


# --- Per-class accuracy -------------------------------------------------------------------


def sorted_accuracy(per_class: dict[str, float | None]) -> list[tuple[str, float]]:
    """(class, top-1) pairs from weakest to strongest; classes without eval drawings are left
    out, and equal accuracies keep the classes' order."""
    pairs = [(name, value) for name, value in per_class.items() if value is not None]
    return sorted(pairs, key=lambda pair: pair[1])


def per_class_accuracy(per_class: dict[str, float | None], top1: float) -> bytes:
    """Horizontal bars of each class's top-1, weakest at the top; with many classes, the
    weakest by name beside the sorted accuracy of them all."""
    pyplot = _pyplot()
    pairs = sorted_accuracy(per_class)
    if not pairs:
        raise ValueError("no class has eval drawings: nothing to plot")
    many = len(pairs) > LABELLED_CLASSES
    shown = pairs[:WEAKEST_SHOWN] if many else pairs
    height = max(3.0, 0.22 * len(shown) + 1.2)
    if many:
        figure, (bars, spread) = pyplot.subplots(
            1, 2, figsize=(14, height), gridspec_kw={"width_ratios": [3, 2]}
        )
    else:
        figure, bars = pyplot.subplots(figsize=(9, height))
    names, values = zip(*shown)
    values = np.asarray(values) * 100
    positions = np.arange(len(shown))
    # Red to green over the range shown, so that the weakest stand out whatever their level.
    low = min(values.min(), 99.0)
    colors = pyplot.get_cmap("RdYlGn")((values - low) / (100 - low))
    drawn = bars.barh(positions, values, color=colors, edgecolor="none")
    bars.bar_label(drawn, fmt="%.0f%%", fontsize=7, padding=2)
    bars.set_yticks(positions, names, fontsize=8)
    bars.invert_yaxis()  # the weakest at the top
    bars.axvline(top1 * 100, color="black", linestyle="--", linewidth=1, label="overall top-1")
    bars.set_xlim(0, 100)
    bars.set(xlabel="top-1 accuracy on the class's eval drawings (%)", ylabel="class")
    title = f"The {len(shown)} weakest of {len(pairs)} classes" if many else "Top-1 by class"
    bars.set_title(title)
    bars.legend(loc="upper right")  # beside the weakest classes' short bars
    bars.grid(axis="x", alpha=0.3)
    if many:
        every = np.asarray([value for _, value in pairs]) * 100
        spread.plot(np.arange(1, len(every) + 1), every, color="tab:blue")
        spread.axhline(top1 * 100, color="black", linestyle="--", linewidth=1)
        spread.set(
            title=f"All {len(pairs)} classes, sorted",
            xlabel="class rank (weakest first)",
            ylabel="top-1 accuracy (%)",
            ylim=(0, 100),
        )
        spread.grid(alpha=0.3)
    figure.tight_layout()
    return png_bytes(figure)


# --- Confusion matrix ---------------------------------------------------------------------


def confused_order(confusion: np.ndarray) -> np.ndarray:
    """An order of the classes that puts those often confused with each other side by side:
    the leaves of an average-linkage clustering on how often each pair is confused (either
    way, as a share of their eval drawings), in optimal leaf order."""
    from scipy.cluster import hierarchy
    from scipy.spatial import distance

    confusion = np.asarray(confusion, dtype=np.float64)
    size = len(confusion)
    if size < 3:
        return np.arange(size)
    rows = np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    shares = confusion / rows
    similarity = shares + shares.T
    np.fill_diagonal(similarity, 0)
    distances = 1.0 / (1.0 + 10.0 * similarity)  # pairs never confused: all at distance 1
    np.fill_diagonal(distances, 0)
    condensed = distance.squareform(distances, checks=False)
    tree = hierarchy.linkage(condensed, method="average")
    return hierarchy.leaves_list(hierarchy.optimal_leaf_ordering(tree, condensed))


def top_confusions(confusion: np.ndarray, labels: list[str], count: int = 20) -> list[dict]:
    """The most frequent mistakes: true class, predicted class, drawings, and their share of
    the true class's eval drawings; most frequent first, ties in class order."""
    confusion = np.asarray(confusion)
    off_diagonal = confusion * (1 - np.eye(len(confusion), dtype=confusion.dtype))
    flat = np.argsort(-off_diagonal, axis=None, kind="stable")[:count]
    rows = confusion.sum(axis=1)
    result = []
    for true, predicted in zip(*np.unravel_index(flat, confusion.shape)):
        drawings = int(off_diagonal[true, predicted])
        if not drawings:
            break
        result.append(
            {
                "true": labels[true],
                "predicted": labels[predicted],
                "drawings": drawings,
                "share": drawings / int(rows[true]),
            }
        )
    return result


def confusion_heatmap(confusion: np.ndarray, labels: list[str], title: str) -> bytes:
    """The confusion matrix as a heat map of each true class's shares, classes in
    `confused_order`; a square root colour scale lets rare confusions show beside the diagonal."""
    from matplotlib import colors

    pyplot = _pyplot()
    confusion = np.asarray(confusion, dtype=np.float64)
    order = confused_order(confusion)
    shares = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    shares = shares[np.ix_(order, order)]
    names = [labels[i] for i in order]
    size = len(labels)
    labelled = size <= LABELLED_CLASSES
    # About 0.25 inch a class while labels fit, then 6 pixels a class (zoom in to read).
    inches = min(max(6.0, 0.25 * size + 2.5), 24.0) if labelled else max(12.0, size * 6 / DPI)
    figure, axes = pyplot.subplots(figsize=(inches + 1.5, inches))
    image = axes.imshow(shares, cmap="hot_r", norm=colors.PowerNorm(0.5, vmin=0, vmax=1))
    fontsize = 8 if labelled else max(2.0, min(8.0, 0.7 * inches * 72 / size))
    axes.set_xticks(np.arange(size), names, rotation=90, fontsize=fontsize)
    axes.set_yticks(np.arange(size), names, fontsize=fontsize)
    axes.set(xlabel="predicted class", ylabel="true class", title=title)
    if labelled:
        raw = confusion[np.ix_(order, order)]
        for row, column in zip(*np.nonzero(raw)):
            dark = shares[row, column] > 0.35
            axes.text(
                column,
                row,
                str(int(raw[row, column])),
                ha="center",
                va="center",
                fontsize=max(6.5, min(10.0, 150 / size)),
                color="white" if dark else "black",
            )
    bar = figure.colorbar(image, ax=axes, fraction=0.04, pad=0.02)
    bar.set_label("share of the true class's eval drawings")
    return png_bytes(figure)


# --- The data -----------------------------------------------------------------------------


def data_overview(stats: dict) -> bytes:
    """From the pipeline's stats.json: drawings per class and split, and (when stats.json
    holds its histogram) the distribution of points per drawing."""
    pyplot = _pyplot()
    per_category = stats.get("per_category") or {}
    if not per_category:
        raise ValueError("stats.json lists no category")
    histogram = stats.get("sequence_length_histogram") or {}
    names = sorted(per_category, key=lambda name: sum(per_category[name].values()))
    train = np.array([per_category[name].get("train", 0) for name in names])
    eval_ = np.array([per_category[name].get("eval", 0) for name in names])
    labelled = len(names) <= LABELLED_CLASSES
    height = max(4.0, 0.2 * len(names) + 1.5) if labelled else 6.0
    columns = 2 if histogram else 1
    figure, axes = pyplot.subplots(1, columns, figsize=(7 * columns, height), squeeze=False)
    counts = axes[0, 0]
    positions = np.arange(len(names))
    if labelled:
        counts.barh(positions, train, label="train", color="tab:blue")
        counts.barh(positions, eval_, left=train, label="eval", color="tab:orange")
        counts.set_yticks(positions, names, fontsize=8)
        counts.invert_yaxis()  # the fewest at the top
        counts.set(xlabel="drawings", ylabel="class")
    else:
        counts.bar(positions, train, width=1.0, label="train", color="tab:blue")
        counts.bar(positions, eval_, bottom=train, width=1.0, label="eval", color="tab:orange")
        counts.set(xlabel=f"class (all {len(names)}, fewest drawings first)", ylabel="drawings")
        counts.set_xticks([])
    totals = train + eval_
    if not labelled and totals.max() > 20 * max(totals.min(), 1):
        # A few classes with far more drawings would flatten the others to nothing.
        counts.set_yscale("log")
    counts.set_title("Drawings per class and split")
    # Below the axes: inside, it would hide the ends of the longest bars.
    counts.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    if histogram:
        spread = axes[0, 1]
        steps = np.array(sorted(int(key) for key in histogram))
        drawings = np.array([histogram[str(key)] for key in steps])
        points = steps + 1  # the ink has one step fewer than the drawing has points
        # At most about 80 bars: one per length reads as noise over a long range.
        edges = np.histogram_bin_edges(points, bins=min(80, int(np.ptp(points)) + 1))
        binned, _ = np.histogram(points, bins=edges, weights=drawings)
        spread.bar(edges[:-1], binned, width=np.diff(edges), align="edge", color="tab:green")
        cumulative = np.cumsum(drawings) / drawings.sum()
        for share, style in ((0.5, "-"), (0.9, "--"), (0.99, ":")):
            at = points[np.searchsorted(cumulative, share)]
            spread.axvline(
                at, color="black", linestyle=style, linewidth=1, label=f"{share:.0%}: {at}"
            )
        spread.set(
            title="Points per drawing (both splits)",
            xlabel="points in the drawing",
            ylabel="drawings per bar",
        )
        spread.legend(title="drawings with at most")
    figure.tight_layout()
    return png_bytes(figure)


# --- Misclassified drawings ---------------------------------------------------------------


def mistakes_grid(mistakes: list[dict], columns: int = 6) -> bytes:
    """Misclassified eval drawings, each drawn as strokes (`trainer.render.draw_ink`) under
    its true class and the model's top guesses with their probabilities.

    Each item holds `true` (a class name), `guesses` ([name, probability] pairs, best first)
    and `points` ((n, 3) absolute points).
    """
    from trainer import render

    pyplot = _pyplot()
    if not mistakes:
        raise ValueError("no misclassified drawing to show")
    columns = min(columns, len(mistakes))
    rows = -(-len(mistakes) // columns)
    # Constrained layout leaves room for each cell's three lines of guesses below it.
    figure, grid = pyplot.subplots(
        rows, columns, figsize=(2.4 * columns, 3.2 * rows), squeeze=False, layout="constrained"
    )
    for axes, mistake in zip(grid.flat, mistakes):
        render.draw_ink(axes, np.asarray(mistake["points"], dtype=np.float32), linewidth=1.5)
        guesses = "\n".join(
            f"{rank}. {name} {probability:.0%}"
            for rank, (name, probability) in enumerate(mistake["guesses"], 1)
        )
        axes.set_title(f"true: {mistake['true']}", fontsize=9, fontweight="bold", color="tab:red")
        axes.set_xlabel(guesses, fontsize=8, loc="left")
    for axes in grid.flat[len(mistakes) :]:
        axes.set_visible(False)
    figure.suptitle("Misclassified eval drawings: the true class, then the model's guesses")
    return png_bytes(figure)
