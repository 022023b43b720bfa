"""Tests of the core: ink math, drawings, raw ink, schema, splits, the command line."""
