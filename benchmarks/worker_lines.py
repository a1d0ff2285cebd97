"""The line protocol between a timing benchmark and its warm worker subprocesses.

A worker writes JSON objects to stdout on lines that start with `PREFIX` (`send`); any other
line it prints is not part of the protocol. The parent (`Worker`) writes commands to the
worker's stdin, one per line (`run N`, `quit`), and reads the next protocol object back.
`benchmarks/step_time.py` and `benchmarks/peers.py` (with `benchmarks/peers_torch.py`, which
runs in another venv and imports nothing of this package but the prefix) speak it.
"""

import json
import subprocess
import sys

PREFIX = "@@step_time "


def send(obj):
    """Writes one protocol object to stdout."""
    sys.stdout.write(PREFIX + json.dumps(obj) + "\n")
    sys.stdout.flush()


def mem_available_gb():
    """MemAvailable from /proc/meminfo in GiB, or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024.0**2
    except OSError:
        return None
    return None


class Worker:
    """A worker subprocess (`args`, started in `cwd` with `env`) and the protocol to it."""

    def __init__(self, key, args, cwd=None, env=None):
        self.key = key
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env, cwd=cwd)
        self.wall, self.cpu, self.loads = [], [], []

    def receive(self):
        """The next protocol object; other lines are skipped."""
        for line in self.proc.stdout:
            if line.startswith(PREFIX):
                return json.loads(line[len(PREFIX):])
        raise RuntimeError(f"Worker {self.key} exited (code {self.proc.wait()}) without answering")

    def command(self, text):
        """Sends one command line and returns the worker's answer."""
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self.receive()
