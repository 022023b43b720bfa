"""The optimizer: Adam on a warmup schedule, with a moving average of the weights
(`averaged_weights` puts the average in the model for a block, as evaluation needs)."""

from __future__ import annotations

import contextlib
import math

import keras
from keras import ops

from trainer.config import Config


@keras.saving.register_keras_serializable(package="trainer")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to `peak`, then constant or cosine decay to zero at `total_steps`."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, decay: str):
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.decay = decay

    def __call__(self, step):
        step = ops.cast(step, "float32")
        rate = ops.convert_to_tensor(self.peak, "float32")
        if self.warmup_steps:
            rate = rate * ops.minimum(1.0, (step + 1.0) / self.warmup_steps)
        if self.decay == "cosine":
            span = max(self.total_steps - self.warmup_steps, 1)
            progress = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
            rate = rate * 0.5 * (1.0 + ops.cos(math.pi * progress))
        return rate

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "decay": self.decay,
        }


def make_optimizer(config: Config) -> keras.optimizers.Optimizer:
    """Adam on the configured schedule, keeping a moving average of the weights when
    `--ema_decay` is set (`finalize_variable_values` copies it into the model). Gradient
    clipping is done by the training step, on the gradient summed over all replicas (see
    `trainer.train_step`)."""
    schedule = WarmupSchedule(
        config.learning_rate, config.warmup_steps, config.steps, config.lr_schedule
    )
    return keras.optimizers.Adam(
        learning_rate=schedule,
        weight_decay=config.weight_decay or None,
        use_ema=config.ema_decay > 0,
        ema_momentum=config.ema_decay,  # read only when use_ema
    )


@contextlib.contextmanager
def averaged_weights(model, optimizer):
    """Inside the block the model holds the optimizer's moving average of its weights (when
    `--ema_decay` keeps one); after it, its own weights again."""
    if not optimizer.use_ema:
        yield
        return
    saved = [variable.numpy() for variable in model.trainable_variables]
    optimizer.finalize_variable_values(model.trainable_variables)
    try:
        yield
    finally:
        for variable, value in zip(model.trainable_variables, saved):
            variable.assign(value)
