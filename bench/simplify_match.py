"""How closely `quickdraw.simplify` reproduces Google's own simplified drawings.

`../shared/quickdraw/raw/` and `simplified/` hold the same drawings under the same key_ids:
each raw drawing, simplified here, is compared with Google's simplified version of it. A
pair matches exactly when every stroke and every point is equal, and within one unit when
the strokes and their point counts are equal and every coordinate is off by at most 1.

    python -m bench --only simplify
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson

from quickdraw import simplify

SHARED = Path(__file__).resolve().parents[2] / "shared" / "quickdraw"
EXACT_TARGET = 0.97
WITHIN_ONE_TARGET = 0.995


@dataclasses.dataclass(frozen=True)
class Pair:
    key_id: str
    raw: list  # the raw drawing's strokes, each [xs, ys, times]
    simplified: list  # Google's simplified strokes, each [xs, ys]


@dataclasses.dataclass(frozen=True)
class Match:
    pairs: int
    exact: int
    within_one: int

    @property
    def exact_share(self) -> float:
        return self.exact / self.pairs

    @property
    def within_one_share(self) -> float:
        return self.within_one / self.pairs


def load_pairs(folder: Path = SHARED) -> list[Pair]:
    """Every raw drawing of `folder/raw` whose key_id `folder/simplified` also holds."""
    pairs = []
    for raw_path in sorted((folder / "raw").glob("*.ndjson")):
        simplified = {}
        for line in (folder / "simplified" / raw_path.name).read_bytes().splitlines():
            record = orjson.loads(line)
            simplified[record["key_id"]] = record["drawing"]
        for line in raw_path.read_bytes().splitlines():
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # the excerpt's last line may be cut short
            if record["key_id"] in simplified:
                pairs.append(
                    Pair(record["key_id"], record["drawing"], simplified[record["key_id"]])
                )
    return pairs


def within_one(got: list, want: list) -> bool:
    """Same strokes of the same point counts, every coordinate within 1."""
    if len(got) != len(want):
        return False
    for got_stroke, want_stroke in zip(got, want):
        for got_values, want_values in zip(got_stroke[:2], want_stroke[:2]):
            if len(got_values) != len(want_values):
                return False
            if any(abs(a - b) > 1 for a, b in zip(got_values, want_values)):
                return False
    return True


def match(pairs: list[Pair]) -> Match:
    """Simplifies each pair's raw drawing and compares it with Google's."""
    exact = near = 0
    for pair in pairs:
        got = simplify.simplify_strokes(pair.raw)
        exact += got == pair.simplified
        near += within_one(got, pair.simplified)
    return Match(len(pairs), exact, near)


def run(folder: Path = SHARED, log=print) -> Match:
    if not (folder / "raw").is_dir():
        raise SystemExit(f"the match needs real drawings at {folder}")
    result = match(load_pairs(folder))
    log(
        f"{result.pairs:,} pairs of raw and simplified drawings with the same key_id "
        f"({folder}/raw and simplified)"
    )
    return result


def table(result: Match) -> str:
    rows = [
        "| measure | this simplification | target |",
        "|---|---|---|",
        f"| equal to Google's, every point | {result.exact_share:.2%} ({result.exact:,}) "
        f"| >= {EXACT_TARGET:.0%}: {_verdict(result.exact_share >= EXACT_TARGET)} |",
        f"| every coordinate within 1 | {result.within_one_share:.2%} ({result.within_one:,}) "
        f"| >= {WITHIN_ONE_TARGET:.1%}: "
        f"{_verdict(result.within_one_share >= WITHIN_ONE_TARGET)} |",
    ]
    return "\n".join(rows)


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"
