"""The Markdown every section of the report writes: tables, numbers, image links."""

import math
import os


def table(header, rows):
    """A Markdown table; `rows` are sequences of cells (anything `str` takes)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(x, digits=2):
    """A fraction as a percentage (`0.8944` -> `89.44`), "n/a" for None."""
    return "n/a" if x is None else f"{100 * x:.{digits}f}"


def num(x, fmt="{:.2f}"):
    """`x` formatted by `fmt`, or "n/a" for None and non-finite floats."""
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


def points(fraction):
    """A difference of fractions in percentage points with its sign: `+0.45`."""
    return f"{100 * fraction:+.2f}"


def mean_spread(s, unit=""):
    """`89.12 ± 0.15 [88.95, 89.30] (3 seeds)` from an accuracy summary entry (std over seeds,
    min-max); `unit` goes after the mean."""
    n = len(s["seeds"])
    std = s["final_test_accuracy_std"]
    text = pct(s["final_test_accuracy_mean"]) + unit + (f" ± {100 * std:.2f}" if std is not None
                                                        else "")
    if n > 1:
        text += f" [{pct(s['final_test_accuracy_min'])}, {pct(s['final_test_accuracy_max'])}]"
    return text + f" ({n} seed{'s' if n != 1 else ''})"


def budget_text(budget, leave_out=()):
    """A budget dict as one line: `epochs 3; batch size 128; ...` (None values left out)."""
    return "; ".join(f"{k.replace('_', ' ')} {v}" for k, v in budget.items()
                     if v is not None and k not in leave_out)


def image(path, out_dir):
    """A Markdown image link to `path` relative to the report's folder, "" if it is absent."""
    if not os.path.exists(path):
        return ""
    return f"![{os.path.basename(path)}]({os.path.relpath(path, out_dir)})"


def seconds(ms):
    """Milliseconds as `"2147 ms"` (or `"12.4 ms"` below 100)."""
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms"
