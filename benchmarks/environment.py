"""Machine, versions and date: the same keys in every benchmark JSON of this folder."""

import os
import platform
import time


def environment():
    """`{"machine": {...}, "versions": {...}, "date": "YYYY-MM-DD HH:MM:SS"}`."""
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
                     "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
