"""Counts the pipeline keeps of every line it reads, merged into `stats.json`.

Each stage emits small partial dicts of counts; `MergeCounts` adds them up. The report
checks the one rule the pipeline lives by: every line read is written, bad, or not
selected, and nothing else.
"""

from __future__ import annotations

import numpy as np

from quickdraw.splits import SPLITS

# The namespace of the pipeline's Beam counters, and the tag of the outputs of counts.
COUNTERS = "quickdraw"
STATS = "stats"

# Why a good drawing was not written.
NOT_SELECTED_REASONS = {
    "other_category": "its word is not in --categories",
    "unrecognized": "--recognized_only and the game did not recognize it",
    "over_quota": "--split=first already has --train_per_class + --eval_per_class of its word",
}


def merge(total: dict, part: dict) -> dict:
    """Adds `part` into `total` in place: numbers add up, dicts merge, lists concatenate."""
    for key, value in part.items():
        if isinstance(value, dict):
            merge(total.setdefault(key, {}), value)
        elif isinstance(value, list):
            total.setdefault(key, []).extend(value)
        else:
            total[key] = total.get(key, 0) + value
    return total


def length_histogram(lengths: np.ndarray) -> dict[str, int]:
    """{"length": count}, string keys so the dict is JSON as it is."""
    values, counts = np.unique(lengths, return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(values, counts)}


def percentiles(histogram: dict[str, int], points=(50, 90, 99)) -> dict:
    """Exact percentiles (nearest rank) of the sequence lengths in a histogram."""
    if not histogram:
        return {}
    lengths = np.array(sorted(int(k) for k in histogram))
    counts = np.array([histogram[str(k)] for k in lengths])
    cumulative = np.cumsum(counts)
    total = int(cumulative[-1])
    result = {"min": int(lengths[0]), "max": int(lengths[-1])}
    result["mean"] = round(float((lengths * counts).sum() / total), 2)
    for point in points:
        rank = max(1, int(np.ceil(point / 100 * total)))
        result[f"p{point}"] = int(lengths[np.searchsorted(cumulative, rank)])
    return result


def report(counts: dict, config_json: dict, classes: list[str]) -> dict:
    """The content of stats.json, from the merged counts of every stage."""
    written = counts.get("written", {})  # {category: {split: n}}
    written_total = {
        split: sum(per_split.get(split, 0) for per_split in written.values()) for split in SPLITS
    }
    bad = counts.get("bad_lines", {})
    not_selected = counts.get("not_selected", {})
    lines_read = counts.get("lines_read", 0)
    accounted = sum(written_total.values()) + sum(bad.values()) + sum(not_selected.values())
    result = {
        "options": config_json,
        "files_read": counts.get("files_read", 0),
        "empty_files": sorted(counts.get("empty_files", [])),
        # .gz files that could not be read to their end; their lines before that count.
        "damaged_files": sorted(counts.get("damaged_files", [])),
        "lines_read": lines_read,
        "written": written_total,
        # Drawings written from raw lines (simplified here) and from simplified lines.
        "written_ink": {
            form: counts.get("written_ink", {}).get(form, 0) for form in ("raw", "simplified")
        },
        "bad_lines": dict(sorted(bad.items())),
        "bad_lines_total": sum(bad.values()),
        "not_selected": dict(sorted(not_selected.items())),
        "not_selected_total": sum(not_selected.values()),
        # lines_read - written - bad - not selected: zero unless a line went missing.
        "unaccounted_lines": lines_read - accounted,
        "classes": len(classes),
        "per_category": {name: written.get(name, {"train": 0, "eval": 0}) for name in classes},
        "sequence_length": percentiles(counts.get("lengths", {})),
        # {ink steps: drawings}, both splits: the report draws it as points per drawing.
        "sequence_length_histogram": dict(
            sorted(counts.get("lengths", {}).items(), key=lambda item: int(item[0]))
        ),
    }
    if config_json["split"] == "first":
        wanted = {"train": config_json["train_per_class"], "eval": config_json["eval_per_class"]}
        shortfall = {}
        for name in classes:
            got = written.get(name, {})
            missing = {s: wanted[s] - got.get(s, 0) for s in wanted if got.get(s, 0) < wanted[s]}
            if missing:
                shortfall[name] = missing
        result["shortfall"] = shortfall
    return result
