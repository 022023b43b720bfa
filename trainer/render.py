"""Drawings as pictures: one function over absolute points, for every figure that shows ink.

The points are those the export takes: (n, 3) x, y and end_of_stroke, in any units (the
simplified format's 0-255, screen pixels, or a record's ink summed back into a shape with
`quickdraw.ink.points_from_deltas`). y grows downwards, as on a screen. Matplotlib (Agg
backend) draws them; no browser is involved.
"""

from __future__ import annotations

import numpy as np

from quickdraw import ink as ink_math

# A stroke's own colour follows its order in the drawing, from dark to light, so the picture
# keeps when each stroke was drawn (as the game's data does).
STROKE_COLORMAP = "viridis"


def strokes(points: np.ndarray) -> list[np.ndarray]:
    """The (k, 2) x and y of each stroke, split after every point that ends one; points
    after the last end of stroke form a last stroke of their own."""
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (n, 3), got {points.shape}")
    ends = np.flatnonzero(points[:, ink_math.END_OF_STROKE] > 0.5) + 1
    pieces = np.split(points[:, :2], ends)
    return [piece for piece in pieces if len(piece)]


def draw_ink(axes, points: np.ndarray, *, linewidth: float = 2.0) -> None:
    """Draws a drawing's strokes on `axes`: equal scales, y downwards, no frame or ticks.

    A one-point stroke shows as a dot; a drawing of no points leaves the axes blank.
    """
    from matplotlib import colormaps

    pieces = strokes(points)
    colors = colormaps[STROKE_COLORMAP](np.linspace(0.0, 0.8, max(len(pieces), 1)))
    for piece, color in zip(pieces, colors):
        if len(piece) == 1:
            axes.plot(piece[:, 0], piece[:, 1], "o", color=color, markersize=linewidth * 1.5)
        else:
            axes.plot(piece[:, 0], piece[:, 1], "-", color=color, linewidth=linewidth)
    if len(pieces):
        # A square around the drawing's centre, so that every drawing fills its cell alike.
        lower = np.min(np.asarray(points)[:, :2], axis=0)
        upper = np.max(np.asarray(points)[:, :2], axis=0)
        centre = (lower + upper) / 2
        half = 0.55 * max(float(np.max(upper - lower)), 1e-6)
        axes.set_xlim(centre[0] - half, centre[0] + half)
        axes.set_ylim(centre[1] + half, centre[1] - half)  # y grows downwards
    axes.set_aspect("equal", adjustable="box")
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_visible(False)
