"""The line protocol between a timing benchmark and its warm worker subprocesses.

A worker writes JSON objects to stdout on lines that start with `PREFIX` (`send`); any other
line it prints is not part of the protocol. The parent (`Worker`) writes commands to the
worker's stdin, one per line (`run N`, `quit`), and reads the next protocol object back. The
worker answers them with `serve` (`run N`: wall and CPU seconds of N steps and the load
average; `quit`: a last object, then it returns); the parent drives its workers with
`round_robin` and summarises each with `Worker.stats`.
`benchmarks/step_time.py` and `benchmarks/peers.py` (with `benchmarks/peers_torch.py`, which
runs in another venv and imports nothing of this package but the prefix) speak it.
"""

import json
import os
import statistics
import subprocess
import sys
import time

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

    def quit(self, timeout=120):
        """Asks the worker to quit; returns its last answer once it has exited."""
        answer = self.command("quit")
        self.proc.wait(timeout=timeout)
        return answer

    def stats(self):
        """Median, min and mean wall and CPU seconds of the steps timed, with every step's."""
        return {
            "median_step_seconds": statistics.median(self.wall),
            "min_step_seconds": min(self.wall),
            "mean_step_seconds": statistics.mean(self.wall),
            "median_cpu_seconds": statistics.median(self.cpu),
            "mean_cpu_seconds": statistics.mean(self.cpu),
            "step_seconds": self.wall,
            "cpu_seconds": self.cpu,
            "load_average_during": self.loads,
        }


def kill_remaining(workers):
    """Kills the workers still running (after an error; those that quit are left alone)."""
    for w in workers:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()


def round_robin(workers, rounds, steps):
    """In every round each worker times `steps` steps, one worker at a time, the order rotated
    every round (so machine noise hits all alike); the times accumulate on the workers."""
    for r in range(rounds):
        shift = r % len(workers)
        for w in workers[shift:] + workers[:shift]:
            out = w.command(f"run {steps}")
            w.wall += out["wall"]
            w.cpu += out["cpu"]
            w.loads.append(out["load_average"][0])
        print(f"  round {r + 1}/{rounds} done (load {os.getloadavg()[0]:.1f})", flush=True)


def serve(step, lines=None, on_quit=None):
    """The worker's side: `run N` times `step()` N times (wall and process CPU seconds, all
    threads) and sends them with the load average; `quit` sends `on_quit()` (default
    `{"bye": True}`) and returns. `lines` defaults to stdin."""
    for line in sys.stdin if lines is None else lines:
        cmd = line.split()
        if cmd and cmd[0] == "run":
            wall, cpu = [], []
            for _ in range(int(cmd[1])):
                t0, c0 = time.perf_counter(), time.process_time()
                step()
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            send({"wall": wall, "cpu": cpu, "load_average": os.getloadavg()})
        elif cmd and cmd[0] == "quit":
            send(on_quit() if on_quit else {"bye": True})
            return
