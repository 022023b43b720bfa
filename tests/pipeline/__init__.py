"""Tests of the Beam pipeline: transforms, whole runs, gs://, progress, the Flex template."""
