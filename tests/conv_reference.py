"""Independent NumPy references for convolutions and BatchNorm (explicit loops over taps).

Shared by the conv-unit and ResNet tests; nothing here imports rlra_tf.
"""

import numpy as np

EPS = 1e-5  # BatchNorm epsilon of AlignedConv2D (PyTorch's)



def np_out_and_pad(size, k, s, padding):
    """Output length and leading pad of TF's convolution along one axis."""
    if padding == "valid":
        return (size - k) // s + 1, 0
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2


def np_taps(x_shape, w_shape, s, padding):
    """Every (i, j, a, b, r, c): output (i, j) reads input (r, c) through kernel tap (a, b)."""
    _, height, width, _ = x_shape
    kh, kw = w_shape[:2]
    oh, pt = np_out_and_pad(height, kh, s, padding)
    ow, pl = np_out_and_pad(width, kw, s, padding)
    taps = []
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for b in range(kw):
                    r, c = i * s + a - pt, j * s + b - pl
                    if 0 <= r < height and 0 <= c < width:
                        taps.append((i, j, a, b, r, c))
    return (oh, ow), taps


def np_conv(x, w, s, padding):
    (oh, ow), taps = np_taps(x.shape, w.shape, s, padding)
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i, j, a, b, r, c in taps:
        out[:, i, j, :] += x[:, r, c, :] @ w[a, b]
    return out


def np_conv_transpose(e, w, s, padding, x_shape):
    """The displacement `d` at the input: every output error spread back through `w`."""
    _, taps = np_taps(x_shape, w.shape, s, padding)
    d = np.zeros(x_shape)
    for i, j, a, b, r, c in taps:
        d[:, r, c, :] += e[:, i, j, :] @ w[a, b].T
    return d


def np_filter_correlation(x, e, w_shape, s, padding):
    _, taps = np_taps(x.shape, w_shape, s, padding)
    g = np.zeros(w_shape)
    for i, j, a, b, r, c in taps:
        g[a, b] += x[:, r, c, :].T @ e[:, i, j, :]
    return g


def np_batch_norm(y, gamma, beta):
    mean = y.mean(axis=(0, 1, 2))
    var = y.var(axis=(0, 1, 2))
    xhat = (y - mean) / np.sqrt(var + EPS)
    return gamma * xhat + beta, xhat, mean, var


def np_batch_norm_backward(e, xhat, var, gamma):
    """d sum(e * BN(y)) / dy with batch statistics (means over batch and positions)."""
    mean_e = e.mean(axis=(0, 1, 2))
    mean_ex = (e * xhat).mean(axis=(0, 1, 2))
    return gamma / np.sqrt(var + EPS) * (e - mean_e - xhat * mean_ex)
