"""The core both halves stand on: Quick, Draw! ink, drawings and records.

`ink` (strokes to the tutorial's normalized deltas), `drawings` (ndjson lines to validated
drawings, the reasons of bad ones in `bad_lines`), `raw_lines` and `simplify` (raw ink, with
times, to the simplified format, as Google made it), `splits` (each drawing's split, shard
and place in the shuffle) and `schema` (the TFRecord features, their writer and parser)
import neither Beam nor Keras, so the pipeline, the trainer and the server all read drawings
the same way. They need numpy; raw ink also numba (its compiled loops) and simdjson (its
parser).
"""
