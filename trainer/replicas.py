"""Sums across a distribution strategy's replicas and workers: the one place the trainer adds
up what each replica or worker computed."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def sum_over_replicas(tensors):
    """The tensors summed over all replicas in a replica context, else as they are."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tensors
    return context.all_reduce(tf.distribute.ReduceOp.SUM, tensors)


def sum_over_workers(strategy, values: np.ndarray, num_workers: int) -> np.ndarray:
    """Each worker's float64 `values` added up, on every worker (one collective sum); every
    worker must call it at the same point."""
    if num_workers == 1:
        return values
    replicas_per_worker = strategy.num_replicas_in_sync // num_workers

    def local_value(context):
        # One replica per worker contributes its worker's values; the others add zeros.
        first = context.replica_id_in_sync_group % replicas_per_worker == 0
        return tf.constant(values if first else np.zeros_like(values), tf.float64)

    return strategy.reduce(
        tf.distribute.ReduceOp.SUM,
        strategy.experimental_distribute_values_from_function(local_value),
        axis=None,
    ).numpy()
