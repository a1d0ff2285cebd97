"""`AlignedConv2D`: a convolutional unit (conv, optional BatchNorm, residual input, activation)."""

import keras
import tensorflow as tf

from rlra_tf.checks import check_pair, check_positive_int, window_output_size
from rlra_tf.layers._unit import AlignedUnit
from rlra_tf.layers.fused_batch_norm import FusedBatchNormalization

NORMS = (None, "batch", "sync_batch")
PADDINGS = ("same", "valid")
SHORTCUTS = (None, "projection")


def default_conv_initializer():
    """He normal over the fan-out, as torchvision initialises ResNet convolutions."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal"
    )


def conv_output_size(size, kernel, stride, padding):
    """Output length of a convolution along one axis (`None` stays `None`)."""
    return window_output_size(size, kernel, stride, padding)


@keras.saving.register_keras_serializable(package="rlra_tf")
class AlignedConv2D(AlignedUnit):
    """A convolutional unit `z = phi(N(conv(x, W) + b) + r)` that carries its error synapses.

    One *unit* of docs/ALGORITHM.md#words: a 2D convolution, an optional BatchNorm `N`, an
    optional residual input `r` and an element-wise activation. Besides the forward weights it
    owns a non-trainable adjacent feedback kernel `feedback` (`F`, the shape of `kernel`),
    applied as a transposed convolution with the forward strides and padding, so that
    `feedback_input(e)` has exactly the shape of the unit's input; and, when `skip_classes` is
    set, a channel-wise skip synapse `skip_feedback` (`S`, shape `[skip_classes, filters]`)
    whose displacement `e_L @ S` is the same at every position.

    With `shortcut="projection"` the unit also owns the projection shortcut of a residual
    block (a 1x1 convolution with `shortcut_strides`, plus BatchNorm when `norm="batch"`):
    `pre_activation(x, residual=block_input)` adds the *projected* block input, so the
    projection is updated from this unit's error by the same local rule as its convolution.
    It carries its own feedback kernel `shortcut_feedback` (shape of `shortcut_kernel`) that
    takes this unit's error back to the block input (`shortcut_feedback_input`). Without a
    projection, a residual passed to `pre_activation` is added as it is (identity shortcut).

    The BatchNorm is a `keras.layers.BatchNormalization` sub-layer (`FusedBatchNormalization`,
    which runs TensorFlow's fused kernel in training): in training it normalises with the
    batch statistics and moves its moving statistics; otherwise it uses the moving
    statistics. Its `gamma`/`beta` are updated from this unit's error through this
    unit alone (docs/ALGORITHM.md#local-updates).

    Args:
        filters: positive integer, the number of output channels.
        kernel_size: integer or pair.
        strides: integer or pair.
        padding: `"same"` or `"valid"`.
        use_bias: whether to add a bias; `None` means "only when `norm` is `None`".
        norm: `None`, `"batch"` or `"sync_batch"` (BatchNorm whose batch statistics are
            all-reduced across the replicas of a `tf.distribute` strategy, so that N replicas
            train exactly like one device; not supported together with `jit_compile` under a
            multi-replica strategy).
        activation: a Keras activation (name or callable); `None` is linear.
        skip_classes: number of classes `K` of the skip synapse, or `None` for none.
        shortcut: `None` (a residual, if any, is added as it is) or `"projection"`.
        shortcut_strides: strides of the projection (integer or pair).
        shortcut_use_bias: whether the projection adds a bias; `None`: as `use_bias`.
        norm_momentum, norm_epsilon: BatchNorm momentum and epsilon (PyTorch's defaults).
        kernel_initializer, bias_initializer: initialisers of the forward weights.
        feedback_initializer: initialiser of `F` and of the projection's feedback kernel
            (default: Gaussian, variance 1 / fan-out, so a displacement keeps the error's scale).
        skip_initializer: initialiser of `S` (default: Gaussian, variance 1 / skip_classes).

    Example:
        >>> unit = AlignedConv2D(16, 3, norm="batch", activation="relu", skip_classes=10)
        >>> unit.build((None, 32, 32, 3))
        >>> h = unit.pre_activation(x, training=True)        # (batch, 32, 32, 16)
        >>> d = unit.feedback_input(tf.ones_like(h))         # (batch, 32, 32, 3)

    Reference: Ororbia, Mali, Kifer & Giles, arXiv 2002.03911 (rec-LRA on ResNets);
    He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="same",
        use_bias=None,
        norm=None,
        activation=None,
        skip_classes=None,
        shortcut=None,
        shortcut_strides=1,
        shortcut_use_bias=None,
        norm_momentum=0.9,
        norm_epsilon=1e-5,
        kernel_initializer=None,
        bias_initializer="zeros",
        feedback_initializer=None,
        skip_initializer=None,
        **kwargs,
    ):
        super().__init__(
            activation=activation,
            skip_classes=skip_classes,
            feedback_initializer=feedback_initializer,
            skip_initializer=skip_initializer,
            **kwargs,
        )
        self.filters = check_positive_int("filters", filters)
        self.kernel_size = check_pair("kernel_size", kernel_size)
        self.strides = check_pair("strides", strides)
        if padding not in PADDINGS:
            raise ValueError(
                f"Expected padding to be one of {PADDINGS}, received: padding={padding!r}"
            )
        self.padding = padding
        if norm not in NORMS:
            raise ValueError(f"Expected norm to be one of {NORMS}, received: norm={norm!r}")
        self.norm = norm
        self.use_bias = (norm is None) if use_bias is None else bool(use_bias)
        if shortcut not in SHORTCUTS:
            raise ValueError(
                f"Expected shortcut to be one of {SHORTCUTS}, received: shortcut={shortcut!r}"
            )
        self.shortcut = shortcut
        self.shortcut_strides = check_pair("shortcut_strides", shortcut_strides)
        self.shortcut_use_bias = (
            self.use_bias if shortcut_use_bias is None else bool(shortcut_use_bias)
        )
        self.norm_momentum = float(norm_momentum)
        self.norm_epsilon = float(norm_epsilon)
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or default_conv_initializer()
        )
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.norm_layer = self._make_norm("norm")
        self.shortcut_norm = self._make_norm("shortcut_norm") if shortcut else None
        self.bias = None
        self.shortcut_kernel = None
        self.shortcut_bias = None
        self.shortcut_feedback = None
        self.built_input_shape = None
        self.built_residual_shape = None

    def _make_norm(self, name):
        if self.norm is None:
            return None
        return FusedBatchNormalization(
            momentum=self.norm_momentum,
            epsilon=self.norm_epsilon,
            synchronized=self.norm == "sync_batch",
            dtype=self.dtype_policy,  # the unit's (mixed) policy, also when loaded later
            name=name,
        )

    def build(self, input_shape, residual_shape=None):
        """Creates the weights; `residual_shape` (the block input's) is needed for a projection."""
        input_shape = tuple(input_shape)
        if len(input_shape) != 4:
            raise ValueError(
                "AlignedConv2D expects inputs of shape (batch, height, width, channels), "
                f"received: input_shape={input_shape}"
            )
        in_channels = input_shape[-1]
        kernel_shape = self.kernel_size + (in_channels, self.filters)
        self.kernel = self.add_weight(
            name="kernel", shape=kernel_shape, initializer=self.kernel_initializer
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.filters,), initializer=self.bias_initializer
            )
        out_shape = self.compute_output_shape(input_shape)
        if self.norm_layer is not None and not self.norm_layer.built:
            self.norm_layer.build(out_shape)
        self._add_feedback_weights(kernel_shape, self.filters)
        self.built_input_shape = input_shape
        if self.shortcut == "projection":
            if residual_shape is None:
                raise ValueError(
                    f"Unit {self.name!r} has a projection shortcut: build it with "
                    "build(input_shape, residual_shape=<shape of the block input>), received: "
                    "residual_shape=None"
                )
            residual_shape = tuple(residual_shape)
            proj_shape = (1, 1, residual_shape[-1], self.filters)
            self.shortcut_kernel = self.add_weight(
                name="shortcut_kernel", shape=proj_shape, initializer=self.kernel_initializer
            )
            if self.shortcut_use_bias:
                self.shortcut_bias = self.add_weight(
                    name="shortcut_bias", shape=(self.filters,), initializer=self.bias_initializer
                )
            if self.shortcut_norm is not None and not self.shortcut_norm.built:
                self.shortcut_norm.build(out_shape)
            self.shortcut_feedback = self.add_weight(
                name="shortcut_feedback",
                shape=proj_shape,
                initializer=self.feedback_initializer,
                trainable=False,
            )
        if residual_shape is not None:
            self.built_residual_shape = tuple(residual_shape)

    @property
    def feedback_weights(self):
        """`F`, the projection's feedback kernel and `S`, whichever this unit has."""
        return [
            w for w in (self.feedback, self.shortcut_feedback, self.skip_feedback) if w is not None
        ]

    # ------------------------------------------------------------------------------- forward

    def _conv(self, x, kernel, strides, padding):
        kernel = tf.cast(kernel, x.dtype)  # mixed precision: float32 variable, compute dtype
        return tf.nn.conv2d(x, kernel, strides=(1,) + strides + (1,), padding=padding.upper())

    def _project(self, residual, training):
        """`(N_p(conv1x1(r) + b_p), conv1x1(r) + b_p)`; an identity returns `(r, None)`."""
        if self.shortcut != "projection":
            return residual, None
        r = self._conv(residual, self.shortcut_kernel, self.shortcut_strides, "same")
        if self.shortcut_bias is not None:
            r = r + tf.cast(self.shortcut_bias, r.dtype)
        linear = r
        if self.shortcut_norm is not None:
            r = self.shortcut_norm(r, training=training)
        return r, linear  # (batch, height, width, filters)

    def pre_activation(self, inputs, residual=None, training=None):
        """`h = N(conv(x) + b) + r`, with `r` projected when the unit has a projection."""
        return self.pre_activation_parts(inputs, residual=residual, training=training)[0]

    def pre_activation_parts(self, inputs, residual=None, training=None):
        """`(h, linear, shortcut_linear)`: `h` as `pre_activation`, and the linear responses
        `conv(x) + b` and `conv1x1(r) + b_p` in front of the unit's and the projection's
        BatchNorm (`None` where there is no BatchNorm)."""
        h = self._conv(inputs, self.kernel, self.strides, self.padding)
        if self.bias is not None:
            h = h + tf.cast(self.bias, h.dtype)
        linear = None
        if self.norm_layer is not None:
            linear = h
            h = self.norm_layer(h, training=training)
        shortcut_linear = None
        if residual is not None:
            r, shortcut_linear = self._project(residual, training)
            h = h + r
            if self.shortcut_norm is None:
                shortcut_linear = None
        elif self.shortcut == "projection":
            raise ValueError(
                f"Unit {self.name!r} has a projection shortcut and needs the block input as "
                "residual=, received: residual=None"
            )
        return h, linear, shortcut_linear  # h: (batch, height, width, filters)

    # ------------------------------------------------------------------------------- feedback

    def _transpose(self, error, kernel, strides, padding, input_shape):
        batch = tf.shape(error)[0]
        h, w, c = input_shape[1], input_shape[2], input_shape[3]
        if h is None or w is None:
            raise ValueError(
                f"Unit {self.name!r} needs the spatial size of its input to carry an error down; "
                f"pass input_shape=, received: input_shape={tuple(input_shape)}"
            )
        out_shape = tf.stack([batch, h, w, c])
        error = tf.cast(error, self.compute_dtype)  # the transposed conv runs in compute dtype
        return tf.nn.conv2d_transpose(
            error, tf.cast(kernel, error.dtype), out_shape, strides=(1,) + strides + (1,),
            padding=padding.upper(),
        )

    def feedback_input(self, error, input_shape=None):
        """Carry an error at this unit's activity down to its input: `conv2d_transpose(e, F)`.

        `input_shape` (static tuple or `tf.shape` of the input) defaults to the shape the unit
        was built with; the result has that shape, batch taken from `error`.
        """
        shape = self.built_input_shape if input_shape is None else input_shape
        return self._transpose(error, self.feedback, self.strides, self.padding, shape)

    def shortcut_feedback_input(self, error, input_shape=None):
        """Carry this unit's error to the block input along the shortcut.

        Identity: the error itself; projection: `conv2d_transpose(e, shortcut_feedback)` with
        the projection's strides, shaped like the block input (`input_shape`, default: the
        residual shape the unit was built with).
        """
        if self.shortcut != "projection":
            return tf.cast(error, self.compute_dtype)
        shape = self.built_residual_shape if input_shape is None else input_shape
        return self._transpose(error, self.shortcut_feedback, self.shortcut_strides, "same", shape)

    @property
    def has_projection(self):
        return self.shortcut == "projection"

    @property
    def feedback_pairs(self):
        """`(feedback, kernel)` pairs of the adjacent synapses: `F` first, then the projection's."""
        pairs = [(self.feedback, self.kernel)]
        if self.shortcut == "projection":
            pairs.append((self.shortcut_feedback, self.shortcut_kernel))
        return pairs

    @property
    def shortcut_feedback_pairs(self):
        """The `(feedback, kernel)` pair the shortcut path uses (empty for an identity)."""
        return self.feedback_pairs[1:]

    def recompute_pre(self, unit_trace):
        """The pre-activation `h` of `unit_trace` (float32), recomputed from the linear
        responses and the residual input the trace keeps anyway, by the same BatchNorm kernel
        (the same numbers); `None` where that is not possible (no BatchNorm, or a BatchNorm
        that does not run the fused kernel). A rule that needs `h` late in the step takes it
        from here instead of keeping it from the forward pass (docs/ALGORITHM.md#costs)."""
        if self.norm_layer is None or unit_trace.linear is None:
            return None
        h = self.norm_layer.recompute_training_output(unit_trace.linear)
        if h is None:
            return None
        r = unit_trace.residual
        if r is not None and self.shortcut == "projection":
            if self.shortcut_norm is None or unit_trace.shortcut_linear is None:
                return None
            r = self.shortcut_norm.recompute_training_output(unit_trace.shortcut_linear)
            if r is None:
                return None
        return h if r is None else h + tf.cast(r, tf.float32)

    @property
    def synchronized_norm(self):
        return self.norm == "sync_batch"

    @property
    def norm_variables(self):
        norms = [n for n in (self.norm_layer, self.shortcut_norm) if n is not None]
        return [v for n in norms for v in n.trainable_variables]

    def norm_transpose(self, error, unit_trace):
        """`N'^T e` through the unit's own BatchNorm with this batch's statistics
        (docs/ALGORITHM.md#norm-transpose).

        `(gamma / sigma_B) * (e - mean(e) - xhat * mean(e * xhat))` per channel, the means
        over the batch and the positions (over every replica's batch for `"sync_batch"`),
        `xhat` the normalised linear response `unit_trace.linear`. Without BatchNorm: `e`.
        """
        return norm_transpose(self.norm_layer, error, unit_trace.linear)

    def synchronized_norm_backward(self, error, unit_trace):
        """For `synchronized_norm`: `(main, shortcut, grads)`, the error through the unit's
        and through the projection's BatchNorm (`norm_transpose`, `shortcut_norm_transpose`)
        and `{id(variable): (derivative of sum(error * h), variable)}` for their `gamma` and
        `beta`, computed without differentiating an all-reduce (see `synchronized_norm`)."""
        grads = {}
        outs = []
        for norm, linear in ((self.norm_layer, unit_trace.linear),
                             (self.shortcut_norm, unit_trace.shortcut_linear)):
            if norm is None or linear is None:
                outs.append(error)
                continue
            out, d_gamma, d_beta = _synchronized_norm_backward(norm, error, linear)
            outs.append(out)
            for d, v in ((d_gamma, norm.gamma), (d_beta, norm.beta)):
                if d is not None:
                    grads[id(v)] = (d, v)
        return outs[0], outs[1], grads

    def shortcut_norm_transpose(self, error, unit_trace):
        """`norm_transpose` through the projection's BatchNorm (identity without one)."""
        return norm_transpose(self.shortcut_norm, error, unit_trace.shortcut_linear)

    def _filter_correlation(self, x, kernel, strides, padding, normalise):
        """Mirror estimate: correlation of noise `x` with its linear response `conv(x, W)`.

        `conv2d_backprop_filter(x, y)` divided by `m * positions of y` (`"positions"`): its
        expectation is `W` shrunk at the border taps under "same" padding, where part of the
        window is zero padding; or divided, tap by tap, by `m` times the positions at which
        that tap saw the input (`"taps"`): expectation exactly `W`.
        """
        kernel = tf.cast(kernel, x.dtype)
        y = self._conv(x, kernel, strides, padding)  # (m, out_h, out_w, filters)
        c = tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=list(kernel.shape), out_backprop=y,
            strides=(1,) + strides + (1,), padding=padding.upper(),
        )
        shape, in_shape = tf.shape(y), tf.shape(x)
        if normalise == "positions":
            return c / tf.cast(shape[0] * shape[1] * shape[2], x.dtype)  # shape of the kernel
        # Positions each tap saw: the same correlation of an all-ones input with an all-ones
        # output, on one channel (cheap), (kh, kw, 1, 1) broadcast over the channels.
        seen = tf.raw_ops.Conv2DBackpropFilter(
            input=tf.ones(tf.stack([1, in_shape[1], in_shape[2], 1]), x.dtype),
            filter_sizes=list(kernel.shape[:2]) + [1, 1],
            out_backprop=tf.ones(tf.stack([1, shape[1], shape[2], 1]), x.dtype),
            strides=(1,) + strides + (1,), padding=padding.upper(),
        )
        return c / (tf.cast(shape[0], x.dtype) * seen)

    def mirror_estimate(self, noise, normalise="positions", kernel=None):
        """The mirror estimate of `F` from noise shaped like the unit's input (m, h, w, c);
        `kernel`: the value of `W` to use (default: read the variable)."""
        kernel = self.kernel if kernel is None else kernel
        return self._filter_correlation(noise, kernel, self.strides, self.padding, normalise)

    def shortcut_mirror_estimate(self, noise, normalise="positions", kernel=None):
        """The mirror estimate of the projection's synapse from noise shaped like the block
        input; `kernel` as for `mirror_estimate`."""
        kernel = self.shortcut_kernel if kernel is None else kernel
        return self._filter_correlation(noise, kernel, self.shortcut_strides, "same",
                                        normalise)

    def mirror_synapses(self, unit_trace):
        synapses = [(self.feedback, _example_shape(unit_trace.inputs), self.mirror_estimate)]
        if self.shortcut == "projection":
            synapses.append((
                self.shortcut_feedback, _example_shape(unit_trace.residual),
                self.shortcut_mirror_estimate,
            ))
        return synapses

    def skip_displacement(self, output_error):
        """`d[n, i, j, :] = e_L[n] @ S`: shape (batch, 1, 1, filters), broadcast over positions."""
        d = super().skip_displacement(output_error)  # (batch, filters)
        return d[:, None, None, :]

    # ------------------------------------------------------------------------------- export

    def forward_weight_pairs(self):
        pairs = super().forward_weight_pairs()
        if self.norm_layer is not None:
            pairs += norm_weight_pairs("norm", self.norm_layer)
        if self.shortcut == "projection":
            pairs.append(("shortcut_kernel", self.shortcut_kernel))
            if self.shortcut_bias is not None:
                pairs.append(("shortcut_bias", self.shortcut_bias))
            if self.shortcut_norm is not None:
                pairs += norm_weight_pairs("shortcut_norm", self.shortcut_norm)
        return pairs

    def _keras_conv(self, name, kernel, bias, strides, padding):
        conv = keras.layers.Conv2D(
            kernel.shape[-1], tuple(kernel.shape[:2]), strides=strides, padding=padding,
            use_bias=bias is not None, name=name,
        )
        conv.build((None, None, None, kernel.shape[2]))
        conv.set_weights([tf.convert_to_tensor(w) for w in [kernel] + ([bias] if bias is not None
                                                                        else [])])
        return conv

    def keras_layers(self, name):
        conv = self._keras_conv(name, self.kernel, self.bias, self.strides, self.padding)
        return conv, keras_norm(self.norm_layer, f"{name}_bn", self.filters)

    def keras_shortcut_layers(self, name):
        """`(conv, norm)` of the projection shortcut as plain Keras layers."""
        conv = self._keras_conv(name, self.shortcut_kernel, self.shortcut_bias,
                                self.shortcut_strides, "same")
        return conv, keras_norm(self.shortcut_norm, f"{name}_bn", self.filters)

    # ------------------------------------------------------------------------------- shapes

    def compute_output_shape(self, input_shape):
        batch, height, width = tuple(input_shape)[:3]
        return (
            batch,
            conv_output_size(height, self.kernel_size[0], self.strides[0], self.padding),
            conv_output_size(width, self.kernel_size[1], self.strides[1], self.padding),
            self.filters,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "use_bias": self.use_bias,
                "norm": self.norm,
                "shortcut": self.shortcut,
                "shortcut_strides": self.shortcut_strides,
                "shortcut_use_bias": self.shortcut_use_bias,
                "norm_momentum": self.norm_momentum,
                "norm_epsilon": self.norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config


def _example_shape(x):
    """The shape of one example of `x`: static where known, else a tensor."""
    if x.shape[1:].is_fully_defined():
        return tuple(x.shape[1:])
    return tf.shape(x)[1:]


def _channel_mean(t, synchronized):
    """Mean over batch and positions, kept as (1, 1, 1, C); over all replicas if synchronized."""
    ctx = tf.distribute.get_replica_context()
    if synchronized and ctx is not None and ctx.num_replicas_in_sync > 1:
        total = tf.reduce_sum(t, axis=(0, 1, 2), keepdims=True)
        count = tf.cast(tf.reduce_prod(tf.shape(t)[:3]), t.dtype)
        total, count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [total, count])
        return total / count
    return tf.reduce_mean(t, axis=(0, 1, 2), keepdims=True)


def norm_transpose(norm, error, linear):
    """The transpose of training-mode BatchNorm's Jacobian applied to `error`
    (docs/ALGORITHM.md#norm-transpose).

    `(gamma / sigma_B) * (e - mean(e) - xhat * mean(e * xhat))` per channel, with the batch
    statistics of `linear` (the BatchNorm's input). For a BatchNorm of this replica's batch it
    is TensorFlow's fused BatchNorm gradient kernel (`FusedBatchNormGradV3`, the one that
    backprop's step runs) given those statistics; a synchronised one takes every mean over
    all replicas (`_synchronized_norm_backward`).
    """
    if norm is None:
        return error
    if norm.synchronized:
        return _synchronized_norm_backward(norm, error, linear)[0]
    x = tf.cast(tf.stop_gradient(linear), tf.float32)  # (batch, height, width, channels)
    mean, variance = tf.nn.moments(x, axes=(0, 1, 2))  # the biased batch variance
    channels = x.shape[-1]
    gamma = tf.ones((channels,)) if norm.gamma is None else tf.cast(norm.gamma, tf.float32)
    out = tf.raw_ops.FusedBatchNormGradV3(
        y_backprop=tf.cast(error, tf.float32), x=x, scale=gamma, reserve_space_1=mean,
        reserve_space_2=variance, reserve_space_3=tf.zeros([0]), epsilon=norm.epsilon,
        data_format="NHWC", is_training=True,
    )[0]
    return tf.cast(out, error.dtype)


def _synchronized_norm_backward(norm, error, linear):
    """`(N'^T e, d gamma, d beta)` through a BatchNorm whose statistics are all-reduced.

    Every mean is over all replicas' examples (all-reduces in program order); the parameter
    derivatives `sum(e * xhat)` and `sum(e)` are over this replica's examples (the optimiser
    sums the replicas). `None` for a parameter the BatchNorm does not have.
    """
    sync = True
    x = tf.cast(tf.stop_gradient(linear), tf.float32)
    e = tf.cast(error, tf.float32)
    mean = _channel_mean(x, sync)
    var = _channel_mean(tf.square(x - mean), sync)
    inv_sigma = tf.math.rsqrt(var + norm.epsilon)
    xhat = (x - mean) * inv_sigma
    scale = inv_sigma if norm.gamma is None else tf.cast(norm.gamma, tf.float32) * inv_sigma
    out = scale * (e - _channel_mean(e, sync) - xhat * _channel_mean(e * xhat, sync))
    d_gamma = None if norm.gamma is None else tf.reduce_sum(e * xhat, axis=(0, 1, 2))
    d_beta = None if norm.beta is None else tf.reduce_sum(e, axis=(0, 1, 2))
    return tf.cast(out, error.dtype), d_gamma, d_beta


def norm_weight_pairs(prefix, norm):
    """`(role, variable)` of a BatchNorm's weights (`prefix/gamma`, ...,
    `prefix/moving_variance`)."""
    names = ("gamma", "beta", "moving_mean", "moving_variance")
    return [(f"{prefix}/{n}", getattr(norm, n)) for n in names if getattr(norm, n) is not None]


def keras_norm(norm, name, channels, rank=4):
    """A plain `keras.layers.BatchNormalization` with the weights of `norm` (`None` stays), for
    inputs of rank `rank`."""
    if norm is None:
        return None
    plain = keras.layers.BatchNormalization(
        momentum=norm.momentum, epsilon=norm.epsilon, center=norm.center, scale=norm.scale,
        name=name,
    )
    plain.build((None,) * (rank - 1) + (channels,))
    plain.set_weights([tf.convert_to_tensor(v) for _, v in norm_weight_pairs("", norm)])
    return plain
