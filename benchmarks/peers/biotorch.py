"""Side by side with BioTorch: ResNet-20 on Fashion-MNIST, accuracy and step time in one run.

BioTorch (PyTorch; FA, DFA, uSF, brSF, frSF on CIFAR ResNets) is the backprop-free library a
user would pick instead of rlra_tf. This benchmark trains both libraries' ResNet-20 on the
same Fashion-MNIST images with the budget of the ResNet-20 benchmark, and times one training
step of every rule of both libraries, round-robin, in the same run.

Budget: the ResNet-20 accuracy benchmark's (`benchmarks.accuracy.train`), by construction.
Its flags (`--epochs`, `--train_limit`, `--batch_size`, `--optimizer`, `--learning_rate`,
`--warmup_epochs`, `--schedule`, `--weight_decay`, `--augment`, `--model`, `--beta`,
`--seeds`, `--rules`, `--out`, `--resume`) are this script's too: 12,800 training images, 3
epochs, batch 128, Adam 1e-3 with cosine decay after 0.2 epochs of linear warm-up, no weight
decay, no augmentation, the full 10,000-image test split after every epoch. Here `--model`
defaults to resnet20, `--seeds` to 0,1, `--rules` (rlra_tf's rule variants) to
bp,fa,dfa,wm,rec_lra and `--out` to `benchmarks/results/peers_biotorch.json`;
`--biotorch_rules` names BioTorch's (bp is its `backpropagation`; usf, frsf, brsf, fa, dfa).

Fairness, as built:
- Data: the per-epoch batches come from rlra_tf's own trainer pipeline
  (`trainers.input_pipeline.train_epoch`: the first `--train_limit` training images, shuffled
  by `(seed, epoch)`). With `deterministic=False` (the ResNet-20 benchmark's setting) that
  pipeline's order is not reproducible from run to run (tf.data's parallel stages), so both
  sides use `deterministic=True`: the rlra_tf run is the accuracy benchmark's
  `run_config(rule, seed)` with `deterministic=True`, trained by its `run_one` (the trainer,
  exactly as that benchmark runs it), and BioTorch is fed the same pipeline's batches as
  arrays, in the same order. Op determinism costs nothing measurable on this CPU.
- Input: 28x28x1 for both (the ResNet-20 benchmark's convention): BioTorch's first
  convolution is made 1-channel before its rule conversion, no 3-channel repeat.
  Standardised with the same mean/std (0.2860/0.3530; inside the model for rlra_tf, on the
  arrays for BioTorch).
- Networks: each library's own ResNet-20 (CIFAR stem, 16/32/64 channels, BatchNorm with
  momentum 0.1 / epsilon 1e-5 in both). They differ in the shortcuts where the shape changes:
  BioTorch's are He et al.'s option A (strided identity, zero-padded channels, no
  parameters), rlra_tf's option B (1x1 projection + BatchNorm, 2,752 more parameters).
- Initialisation (`--biotorch_init=matched`, the default): BioTorch's forward weights are
  re-initialised as rlra_tf's (He normal over the fan-out for convolutions, Glorot uniform
  for the classifier); feedback weights stay each library's own.
- Optimiser and schedule: rlra_tf's (Keras) Adam and `WarmupSchedule`, rebuilt in torch per
  step in `benchmarks/peers/torch_side.py` (Adam epsilon 1e-7 on both sides).
- Threads: `--threads` (default: the machine's cores) for both in the accuracy runs
  (`torch.set_num_threads`/`set_num_interop_threads`; TF intra- and inter-op threads).
- Step time: one worker process per library and rule, each warm and holding the run's model,
  optimiser and the first training batch of seed 0; `--timing_rounds` rounds in which every
  worker times `--timing_steps` steps, one worker at a time, the order rotated every round
  (`benchmarks.workers`), for each of `--timing_threads`. A step is what a user's
  training loop does: rlra_tf's `train_on_batch` (the trainer's compiled train step), and
  BioTorch's forward, cross-entropy, backward and Adam step. Wall and CPU seconds per step and
  the load average are recorded. The step-time bars hold only if they hold at every thread
  count timed: on a loaded machine torch's OpenMP threads wait for each other far longer
  than TF's thread pool does, so time at 1 thread as well where the load is not low.

This file holds the flags and the run; `benchmarks/peers/lib.py` the work (and rlra_tf's
timing worker), `benchmarks/peers/torch_side.py` the BioTorch side. BioTorch and torch are the
benchmark-only extra `peers`; `make bench-peers` installs it into a
venv of its own (`.venv-peers`) and runs this script with the project's venv, which starts
the BioTorch side as subprocesses of `--torch_python` (default `.venv-peers/bin/python` when
it exists, else this Python). Without it the script stops at once with exit status 2.

    make bench-peers                                   # install the extra, then the below
    python -m benchmarks.peers.biotorch                # ~1.5 h on 2 shared cores
    python -m benchmarks.peers.biotorch --parts=timing --timing_rounds=2 --timing_steps=2
    python -m benchmarks.peers.biotorch --seeds=0 --epochs=1 --train_limit=2560 \
        --out=/tmp/p.json

Writes `benchmarks/results/peers_biotorch.json` (rewritten after every run; a rerun skips the
runs and the timing already in it, `--noresume` redoes them, `--retime` redoes only the
timing) and a PNG beside it, and prints the tables and the verdicts of the report.
"""

import dataclasses
import os
import shutil
import sys
import tempfile
import time

from absl import app, flags

from benchmarks import harness, variants
from benchmarks.accuracy import train as ra
from benchmarks.peers import lib as peers_lib

RLRA_RULES = ("bp", "fa", "dfa", "wm", "rec_lra")
BIOTORCH_RULES = ("bp", "fa", "dfa", "usf", "frsf")

_BIOTORCH_RULES = flags.DEFINE_list(
    "biotorch_rules", list(BIOTORCH_RULES),
    f"BioTorch's rules to train and time: some of {', '.join(peers_lib.BIOTORCH_RULES)} (bp is "
    "its `backpropagation` mode).",
)
_PARTS = flags.DEFINE_list("parts", ["accuracy", "timing"], "What to run: accuracy, timing.")
_TORCH_PYTHON = flags.DEFINE_string(
    "torch_python", None,
    "The Python that has torch, torchvision and biotorch (the `peers` extra); default "
    ".venv-peers/bin/python if it exists, else this Python.",
)
_THREADS = flags.DEFINE_integer(
    "threads", os.cpu_count() or 1, "CPU threads of both libraries in the accuracy runs."
)
_TIMING_THREADS = flags.DEFINE_list(
    "timing_threads", [str(os.cpu_count() or 1)],
    "Thread counts to time at (both libraries pinned alike); the bars need every one of them.",
)
_INIT = flags.DEFINE_enum(
    "biotorch_init", "matched", ["matched", "native"],
    "BioTorch's forward initialisation: rlra_tf's scheme (matched) or BioTorch's Xavier.")
_ROUNDS = flags.DEFINE_integer("timing_rounds", 6, "Round-robin rounds of the step timing.")
_STEPS = flags.DEFINE_integer("timing_steps", 5, "Timed steps per worker per round.")
_WARMUP = flags.DEFINE_integer("timing_warmup", 3, "Untimed steps first (the first traces).")
_RETIME = flags.DEFINE_bool("retime", False, "Time the steps again even if the JSON has them.")
_RLRA_FROM = flags.DEFINE_string(
    "rlra_from", None, "Take rlra_tf's runs from this accuracy JSON (accuracy_resnet20.json) "
    "instead of training them, where a run's config equals this benchmark's but for "
    "`deterministic` (its batches are then the same subset and shuffle seeds, not the "
    "bit-identical order).")
_MIN_FREE = flags.DEFINE_float(
    "min_free_gb", 2.0, "Stop rather than start a timing worker with less memory available."
)


def rlra_config(rule, seed):
    """The ResNet-20 benchmark's config of `rule`, with the deterministic input pipeline."""
    return dataclasses.replace(ra.run_config(rule, seed), deterministic=True)


def _rlra_source(runs):
    """Where the rlra_tf runs come from, in words."""
    files = sorted({(r["source"]["file"], r["source"]["date"]) for r in runs
                    if r["library"] == "rlra_tf" and r.get("source")})
    own = sum(1 for r in runs if r["library"] == "rlra_tf" and not r.get("source"))
    parts = [f"{own} trained here on the batches BioTorch was given"] if own else []
    parts += [f"taken from the ResNet-20 benchmark's runs in "
              f"{os.path.relpath(f, harness.ROOT) if os.path.isabs(f) else f} "
              f"({d}: the same subset, budget, seeds and per-epoch shuffle seeds, but tf.data's "
              "non-deterministic order, so not the bit-identical batches)" for f, d in files]
    return "; ".join(parts)


def _check_flags():
    """The seeds and thread counts; `app.UsageError` for anything this benchmark cannot run."""
    from benchmarks.peers.torch_side import MODELS

    for part in _PARTS.value:
        if part not in ("accuracy", "timing"):
            raise app.UsageError(f"Expected --parts among accuracy, timing, received: {part!r}")
    try:
        variants.check(ra._RULES.value, ra.TRAINABLE)
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    for rule in _BIOTORCH_RULES.value:
        if rule not in peers_lib.BIOTORCH_RULES:
            raise app.UsageError(f"Expected --biotorch_rules among {peers_lib.BIOTORCH_RULES}, "
                                 f"received: {rule!r}")
    if ra._MIXED.value != "off":
        raise app.UsageError("BioTorch trains in float32: --mixed_precision must be off, "
                             f"received: {ra._MIXED.value!r}")
    if ra._MODEL.value not in MODELS:
        raise app.UsageError(f"Expected --model among BioTorch's {MODELS}, received: "
                             f"{ra._MODEL.value!r}")
    try:
        seeds = [int(s) for s in ra._SEEDS.value]
        threads = [int(t) for t in _TIMING_THREADS.value]
    except ValueError:
        raise app.UsageError("Expected integer --seeds and --timing_threads, received: "
                             f"{ra._SEEDS.value}, {_TIMING_THREADS.value}") from None
    if min(threads) < 1 or _THREADS.value < 1:
        raise app.UsageError(f"Expected positive thread counts, received: {threads}, "
                             f"--threads={_THREADS.value}")
    return seeds, threads


def _settings(python):
    init = _INIT.value
    return {
        "input": "28x28x1 for both; BioTorch's first convolution made 1-channel (no 3-channel "
                 "repeat); standardised with mean 0.2860, std 0.3530",
        "data": "rlra_tf's trainer pipeline with deterministic=True: the same images, batches "
                "and order for both libraries",
        "networks": "each library's own ResNet-20; where the shape changes, BioTorch's "
                    "shortcuts are option A (zero-padded strided identity), rlra_tf's option B "
                    "(1x1 projection + BatchNorm)",
        "init": f"biotorch_init={init}: " + (
            "BioTorch's forward weights re-initialised as rlra_tf's (He normal fan-out "
            "convolutions, Glorot uniform classifier, zero biases); feedback weights each "
            "library's own" if init == "matched" else "each library's own initialisation"),
        "optimizer": "Keras Adam (epsilon 1e-7) and rlra_tf's WarmupSchedule, rebuilt per "
                     "step in torch for BioTorch",
        "threads": _THREADS.value,
        "biotorch_rules": "bp is BioTorch's `backpropagation` mode; dfa passes the targets and "
                          "the loss to forward(), as BioTorch's own trainer does",
        "torch_python": os.path.relpath(python, harness.ROOT),
    }


TIMING_SETTINGS = {
    "batch": "the first training batch of the first seed's first epoch (real images)",
    "rlra_tf_step": "model.train_on_batch (the trainer's compiled step: rule, Adam with the "
                    "run's schedule, accuracy metric), jit off",
    "biotorch_step": "forward (dfa: with targets and loss), cross-entropy, backward, Adam step "
                     "with the run's schedule",
    "timing": "wall (time.perf_counter) and process CPU time (all threads) per step; one "
              "process per library and rule, round-robin, order rotated every round",
    "thread_pinning": "torch.set_num_threads(n) and set_num_interop_threads(n); TF intra-op "
                      "and inter-op threads n",
}


def main(argv):
    del argv
    seeds, thread_counts = _check_flags()
    python = peers_lib.default_torch_python(_TORCH_PYTHON.value)
    try:
        peer_versions = peers_lib.check_peers(python)
    except peers_lib.PeersMissingError as err:
        print(err, file=sys.stderr)
        return 2
    print(f"BioTorch side: {python} ("
          + ", ".join(f"{k} {v}" for k, v in peer_versions.items()) + ")", flush=True)
    peers_lib.pin_tf_threads(_THREADS.value)
    import numpy as np

    from benchmarks.per_epoch_test import TestEvaluator
    from rlra_tf import data
    from rlra_tf.models.resnet import parameter_counts
    from trainers import train_lib

    out = ra._OUT.value
    png = harness.png_path(out)
    old = {}
    if ra._RESUME.value and os.path.exists(out):
        old = harness.read_json(out)
    runs = old.get("runs", [])
    rlra_rules, biotorch_rules = list(ra._RULES.value), list(_BIOTORCH_RULES.value)
    base = rlra_config("bp", seeds[0])
    ds_info = data.info(base.dataset)
    steps_per_epoch = train_lib.steps_per_epoch(base, ds_info)
    test_ds = data.load(base.dataset, "test", 500)
    evaluator = TestEvaluator(test_ds)

    def spec_of(rule, seed, threads):
        return peers_lib.biotorch_spec(rule, seed, rlra_config("bp", seed), steps_per_epoch,
                                       ds_info, threads, _INIT.value)

    budget = {
        "model": f"{base.model}: each library's own (CIFAR stem, 16/32/64 channels, "
                 "BatchNorm, ReLU), 28x28x1 input",
        "dataset": base.dataset, "train_examples": base.train_limit or ds_info.num_train,
        "epochs": base.epochs, "batch_size": base.batch_size, "steps_per_epoch": steps_per_epoch,
        "optimizer": base.optimizer, "learning_rate": base.learning_rate,
        "weight_decay": base.weight_decay,
        "schedule": f"{base.schedule} after {base.warmup_epochs} epochs of linear warm-up",
        "augment": base.augment, "beta (rec_lra)": ra._BETA.value,
        "test": "full 10,000-image test split after every epoch",
    }
    title = (f"{base.model} on Fashion-MNIST, rlra_tf vs BioTorch: {budget['train_examples']} "
             f"train examples, {base.epochs} epochs, {base.optimizer} lr {base.learning_rate} "
             f"{base.schedule}, batch {base.batch_size}")
    fwd_params = parameter_counts(train_lib.build_model(base, ds_info))["forward"]
    result = dict(old)

    def write():
        env = harness.environment(**peer_versions)
        result.update({
            "benchmark": os.path.splitext(os.path.basename(out))[0], **env,
            "title": title, "budget": budget, "settings": _settings(python),
            "forward_params": {"rlra_tf": fwd_params},
            "rlra_tf_runs": _rlra_source(runs), "runs": runs,
        })
        harness.write_json(out, result)

    reused = set()  # (rule, seed) of rlra_tf runs taken from --rlra_from
    if _RLRA_FROM.value and "accuracy" in _PARTS.value:
        taken = peers_lib.reused_runs(_RLRA_FROM.value, rlra_rules, seeds, rlra_config)
        reused = {(r["rule"], r["seed"]) for r in taken}
        runs = [r for r in runs if r["library"] != "rlra_tf"
                or (r["rule"], r["seed"]) not in reused] + taken
        print(f"rlra_tf: {len(taken)} runs taken from {_RLRA_FROM.value}", flush=True)
    start = time.time()
    workroot = tempfile.mkdtemp(prefix="peers_")
    try:
        for seed in seeds if "accuracy" in _PARTS.value else ():
            arrays = None
            for library, rule in ([("rlra_tf", r) for r in rlra_rules]
                                  + [("biotorch", r) for r in biotorch_rules]):
                if library == "rlra_tf" and (rule, seed) in reused:
                    continue
                if library == "rlra_tf":
                    config = rlra_config(rule, seed)
                    key = {"config": config.to_json(), "rule": peers_lib.rule_config(config)}
                else:
                    spec = spec_of(rule, seed, _THREADS.value)
                    key = dict(spec, versions=peer_versions)
                if any(r["library"] == library and r.get("key") == key for r in runs):
                    print(f"{library} {rule} seed {seed}: already in {out}, skipped")
                    continue
                runs = [r for r in runs if (r["library"], r["rule"], r["seed"])
                        != (library, rule, seed)]
                if library == "biotorch" and arrays is None:
                    print(f"Writing the batches of seed {seed} for BioTorch", flush=True)
                    arrays = peers_lib.write_arrays(
                        rlra_config("bp", seed), ds_info, peers_lib.dataset_arrays(test_ds),
                        os.path.join(workroot, f"seed{seed}"))
                print(f"{library} {rule} seed {seed}", flush=True)
                if library == "rlra_tf":
                    record = ra.run_one(rule, config, evaluator, workroot)
                else:
                    record = peers_lib.run_biotorch(spec, arrays, python, workroot)
                record.update(library=library, key=key)
                runs.append(record)
                write()
        if "timing" in _PARTS.value and (_RETIME.value or not ra._RESUME.value
                                         or not old.get("step_time")):
            x, y = peers_lib.epoch_arrays(base, ds_info, 0)
            batch = os.path.join(workroot, "batch.npz")
            np.savez(batch, x=x[:base.batch_size], y=y[:base.batch_size])
            common = {"batch": batch, "warmup": _WARMUP.value}
            rlra_specs = {rule: (lambda threads, rule=rule: dict(
                common, threads=threads, steps_per_epoch=steps_per_epoch,
                config=ra.run_config(rule, seeds[0]).to_json()))
                for rule in rlra_rules}
            biotorch_specs = {rule: (lambda threads, rule=rule: dict(
                spec_of(rule, seeds[0], threads), **common)) for rule in biotorch_rules}
            timing = peers_lib.run_timing(rlra_specs, biotorch_specs, thread_counts,
                                          _ROUNDS.value, _STEPS.value, workroot, python,
                                          _MIN_FREE.value)
            timing["settings"] = dict(TIMING_SETTINGS, threads=thread_counts,
                                      rounds=_ROUNDS.value, steps_per_round=_STEPS.value,
                                      warmup_steps=_WARMUP.value)
            result["step_time"] = timing
        elif "timing" in _PARTS.value:
            print(f"Step times already in {out}, kept (--retime measures them again)")
        write()
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    peers_lib.plot(result, png)
    peers_lib.print_tables(result)
    print(f"Wrote {out} and {png} ({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    flags.FLAGS.set_default("model", "resnet20")
    flags.FLAGS.set_default("seeds", ["0", "1"])
    flags.FLAGS.set_default("rules", list(RLRA_RULES))
    flags.FLAGS.set_default("out", harness.default_out("peers_biotorch"))
    app.run(main)
