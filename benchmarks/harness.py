"""What every benchmark script shares: where results go, the machine record, writing JSON.

Every result file holds `machine` (platform, processor, CPUs, the load average when the run
started and, for the timing benchmarks, after it), `versions` and `date` (`environment()`),
beside the benchmark's own keys; `write_json` replaces a file atomically, so an interrupted
benchmark never leaves half a file (the accuracy runs rewrite theirs after every run).
"""

import json
import os
import platform
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join("benchmarks", "results")  # relative to ROOT
QUICK = "quick"  # the quick suite's folder inside RESULTS_DIR


def results_dir(suite, base=None):
    """Where a suite's JSON goes: `base` (default `ROOT/RESULTS_DIR`) for the full suite,
    `base/quick` for the quick one."""
    base = base or os.path.join(ROOT, RESULTS_DIR)
    return base if suite == "full" else os.path.join(base, QUICK)


def default_out(name):
    """`benchmarks/results/<name>.json`: where a script writes when `--out` is not given."""
    return os.path.join(RESULTS_DIR, name + ".json")


def environment(**versions):
    """`{"machine": {...}, "versions": {...}, "date": "YYYY-MM-DD HH:MM:SS"}`; `versions`
    adds libraries beyond TensorFlow, Keras and Python (`onnx="1.23.2"`)."""
    import keras
    import tensorflow as tf

    return {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "load_average": list(os.getloadavg()),
        },
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "python": platform.python_version(), **versions},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write_json(path, obj):
    """Writes `obj` to `path` as indented JSON, atomically (creating the folder)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def png_path(out):
    """The PNG written beside the JSON `out`."""
    return os.path.splitext(out)[0] + ".png"
