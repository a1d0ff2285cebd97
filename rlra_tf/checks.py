"""The argument checks of the library, one of each: a `ValueError` that quotes what was received
(`Expected a positive integer for units, received: units=0`), as Keras' own checks do."""

import numbers


def check_positive_int(name, value):
    """`value` as an int if it is a positive integer (NumPy's too, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"Expected a positive integer for {name}, received: {name}={value!r}")
    return int(value)


def check_choice(name, value, allowed):
    """`value` if it is one of `allowed` (the message lists them)."""
    if value not in allowed:
        choices = sorted(allowed, key=str) if isinstance(allowed, (set, frozenset)) else allowed
        raise ValueError(
            f"Expected {name} to be one of {list(choices)}, received: {name}={value!r}"
        )
    return value


def check_nonnegative(name, value, allow_none=False):
    """`value` as a float if it is a number >= 0 (`None` passes with `allow_none`)."""
    if value is None and allow_none:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
        raise ValueError(f"Expected a non-negative number for {name}, received: {name}={value!r}")
    return float(value)


def check_pair(name, value):
    """An integer or a pair of them as a pair of positive integers (kernel sizes, strides)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2:
        raise ValueError(f"Expected an integer or a pair for {name}, received: {name}={value!r}")
    return tuple(check_positive_int(name, v) for v in value)


def window_output_size(size, window, stride, padding):
    """Output length of a convolution or pooling along one axis (`None` stays `None`)."""
    if size is None:
        return None
    if padding == "same":
        return -(-size // stride)
    return (size - window) // stride + 1
