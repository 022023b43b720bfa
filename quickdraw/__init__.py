"""The core both halves stand on: Quick, Draw! ink, drawings and records, in numpy only.

`ink` (strokes to the tutorial's normalized deltas), `drawings` (ndjson lines to validated
drawings) and `schema` (the TFRecord features, their writer and parser) import neither Beam
nor Keras, so the pipeline, the trainer and the server all read drawings the same way.
"""
