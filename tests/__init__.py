"""The test suite: packages that mirror the code (quickdraw, pipeline, trainer, serve), and
support, the helpers they share."""
