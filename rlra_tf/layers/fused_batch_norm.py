"""`FusedBatchNormalization`: Keras' BatchNormalization with TensorFlow's fused training kernel."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="rlra_tf")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` that normalises 4D batches with one fused kernel.

    Keras 3's BatchNormalization computes a training step from separate ops (moments, then the
    normalisation, and their gradients op by op). On a convolutional feature map in training
    mode this layer runs TensorFlow's fused kernel instead (`FusedBatchNormV3`, whose gradient
    is the fused `FusedBatchNormGradV3`): one pass for the statistics and the output, one for
    the gradient. The arithmetic is the same: batch statistics over batch and positions, the
    biased batch variance in the normalisation *and* in the moving variance (as Keras does;
    the kernel's Bessel-corrected variance is scaled back), moving averages with `momentum`.
    The ResNet-20 training step on a CPU takes about 20% less time (`BENCHMARKS.md`).

    Everything else is Keras' own code path: inference (moving statistics), inputs that are
    not 4D channels-last, masks, `synchronized=True` (statistics all-reduced across
    replicas) and batch renormalisation. Inputs in a mixed-precision compute dtype are upcast
    to float32 for the statistics, as Keras does, and the output is cast back.

    Takes the arguments of `keras.layers.BatchNormalization`, and `fused` (default `True`):
    `False` runs Keras' own op-by-op training step, the same arithmetic rounded differently
    (about 1e-6 relative per layer; through ResNet-50's 53 BatchNorms at initialisation the
    logits differ by about 5e-5 relative).

    Example:
        >>> norm = FusedBatchNormalization(momentum=0.9, epsilon=1e-5)
        >>> y = norm(tf.random.normal((8, 4, 4, 16)), training=True)  # (8, 4, 4, 16)
    """

    def __init__(self, fused=True, **kwargs):
        super().__init__(**kwargs)
        self.fused = bool(fused)

    def _fusable(self, inputs, training, mask):
        return (
            self.fused
            and bool(training)
            and self.trainable
            and mask is None
            and not self.synchronized
            and not self.renorm
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        y, mean, unbiased_var, count = self._fused_training(inputs)
        variance = unbiased_var * tf.maximum(count - 1.0, 0.0) / count
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(
            self.moving_variance * momentum + variance * (1.0 - momentum)
        )
        return tf.cast(y, self.compute_dtype)

    def recompute_training_output(self, inputs):
        """The output of a training call on `inputs` (float32), computed again by the same
        kernel from the same inputs, without moving the moving statistics; `None` where a
        training call does not run the fused kernel (see the class).

        A learning rule that needs the normalised output late in a step recomputes it from
        the layer's input, which the step keeps anyway for the gradient, instead of keeping
        the output (as backprop's step keeps the input, not the output).
        """
        if not self._fusable(inputs, True, None):
            return None
        return self._fused_training(inputs)[0]

    def _fused_training(self, inputs):
        """`(y, batch mean, Bessel-corrected batch variance, count)` of the fused kernel."""
        x = tf.cast(inputs, tf.float32)  # (batch, height, width, channels)
        channels = x.shape[-1]
        gamma = tf.ones((channels,)) if self.gamma is None else tf.cast(self.gamma, tf.float32)
        beta = tf.zeros((channels,)) if self.beta is None else tf.cast(self.beta, tf.float32)
        empty = tf.constant([], tf.float32)
        y, mean, unbiased_var, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=gamma, offset=beta, mean=empty, variance=empty, epsilon=self.epsilon,
            exponential_avg_factor=1.0, data_format="NHWC", is_training=True,
        )
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float32)
        return y, mean, unbiased_var, count

    def get_config(self):
        config = super().get_config()
        config["fused"] = self.fused
        return config
