"""Tests of the trainer: input, model, training, evaluation, export, report, predict, submit."""
