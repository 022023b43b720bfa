"""The training step: each branch's loss, the gradient clipped over the whole batch, one
optimizer update, on every replica of the distribution strategy.

`make_train_steps` returns a `tf.function` that runs several steps in one call, so that the
loop in `trainer.train` comes back to Python only when it has something to do (log, save a
checkpoint, evaluate). Two replicas take the very steps one replica takes
(`tests/support/replica_steps.py`).
"""

from __future__ import annotations

import tensorflow as tf

from quickdraw import schema
from trainer import checks
from trainer import model as model_lib
from trainer.config import Config


def smoothed_targets(labels, num_classes: int, label_smoothing: float):
    """One-hot targets (batch, classes), with `label_smoothing` of the mass spread evenly over
    all classes."""
    targets = tf.one_hot(labels, num_classes)
    if label_smoothing:
        targets = targets * (1 - label_smoothing) + label_smoothing / num_classes
    return targets


def make_train_steps(strategy, model, optimizer, config: Config, num_classes: int):
    """A tf.function `train_steps(iterator, num_steps)` that runs `num_steps` training steps
    on batches from a (distributed) iterator and returns their mean loss."""
    replicas = strategy.num_replicas_in_sync
    branches = model_lib.branch_logits(model)  # the same weights, each branch's logits

    def replica_step(features, labels):
        features = dict(features)
        # Each branch's labels: with --raster the image branch has a batch of its own.
        branch_labels = [labels]
        if config.raster:
            branch_labels.append(features.pop(schema.IMAGE_LABELS))
        branch_labels = [checks.checked_labels(each, num_classes) for each in branch_labels]
        with tf.GradientTape() as tape:
            # Each branch learns on its own loss; their sum is the step's loss.
            logits = tf.nest.flatten(branches(features, training=True))
            losses = tf.add_n(
                [
                    tf.nn.softmax_cross_entropy_with_logits(
                        smoothed_targets(each, num_classes, config.label_smoothing), each_logits
                    )
                    for each, each_logits in zip(branch_labels, logits)
                ]
            )  # (batch,)
            loss = tf.nn.compute_average_loss(losses, global_batch_size=config.batch_size)
        gradients = tape.gradient(loss, model.trainable_variables)
        # Clip by the norm of the whole batch's gradient, summed over all replicas (Keras's
        # own clipping would clip each replica's share separately).
        if replicas > 1:
            context = tf.distribute.get_replica_context()
            gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        if config.gradient_clipping_norm:
            gradients, _ = tf.clip_by_global_norm(gradients, config.gradient_clipping_norm)
        if replicas > 1:
            # The optimizer sums the replicas' gradients once more: hand it equal shares.
            gradients = [gradient / replicas for gradient in gradients]
        optimizer.apply(gradients, model.trainable_variables)
        return loss

    # Only the loop needs AutoGraph; converting Keras's own code would just slow tracing.
    replica_step = tf.autograph.experimental.do_not_convert(replica_step)

    @tf.function
    def train_steps(iterator, num_steps):
        total = tf.constant(0.0)
        for _ in tf.range(num_steps):
            features, labels = next(iterator)
            losses = strategy.run(replica_step, args=(features, labels))
            loss = strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)
            total += tf.cast(loss, tf.float32)
        return total / tf.cast(num_steps, tf.float32)

    return train_steps
