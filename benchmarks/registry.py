"""Every benchmark, declared once: what runs it, with which arguments, what it writes, and
which claims of the report its results feed.

The suite runner (`benchmarks.run`) runs these entries in this order, each invocation as
`python -m <module> <arguments> --out=<results folder>/<name>.json`; the report
(`benchmarks.report`) reads `<name>.json` of every entry, says which command writes a file that
is missing, and judges each claim (`benchmarks.report.claims`) on the files that feed it. A
result file that no entry names is not read (`results/archive/` keeps the superseded ones).

To add a benchmark: write the script (absl flags, `--out`, JSON as `benchmarks.harness`
writes it), add one entry here, and give the report a section that renders it (see
benchmarks/README.md).
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One result file and the commands that write it.

    Args:
        name: the result file is `<name>.json` (with `<name>.png` beside it, if drawn).
        module: the script, run as `python -m <module>`.
        full: the full suite's invocations, each a tuple of arguments; several invocations
            write one file one after the other (the later ones resume: they keep its runs).
        quick: the quick suite's invocations, or None when the quick suite leaves it out.
        claims: the keys of `benchmarks.report.claims.CLAIMS` that this file feeds.
        needs: an optional extra the script needs beyond the project's venv (such a
            benchmark runs only when named with `--only`).
    """

    name: str
    module: str
    full: tuple
    quick: tuple = None
    claims: tuple = ()
    needs: str = None

    def invocations(self, suite):
        """The argument tuples of `suite` ("quick" or "full")."""
        if suite not in ("quick", "full"):
            raise ValueError(f"Expected suite 'quick' or 'full', received: suite={suite!r}")
        if suite == "quick" and self.quick is None:
            raise ValueError(f"Benchmark {self.name!r} is not part of the quick suite, "
                             f"received: suite={suite!r}")
        return self.quick if suite == "quick" else self.full

    def commands(self, suite="full"):
        """`["python -m <module> <arguments> --out=benchmarks/results/<name>.json", ...]`: what
        writes the file, as a person types it."""
        folder = "benchmarks/results" + ("/quick" if suite == "quick" else "")
        return [" ".join(("python", "-m", self.module) + args + (f"--out={folder}/{self.name}"
                                                              ".json",))
                for args in self.invocations(suite)]


ACCURACY = "benchmarks.accuracy.train"
SGD = ("--optimizer=sgd", "--learning_rate=0.05", "--weight_decay=5e-4")
ABLATION = ("rec_lra,rec_lra-no_mirror,rec_lra-no_through,rec_lra-raw_errors,"
            "rec_lra-skip_synapses,rec_lra-first")


def _depth(model):
    """The depth study at `model`: bp and rec_lra over two seeds, then wm and fa over one into
    the same file (the second invocation resumes, so it keeps the first's runs)."""
    return ((f"--model={model}", "--seeds=0,1", "--rules=bp,rec_lra", "--noresume"),
            (f"--model={model}", "--seeds=0", "--rules=wm,fa,kp"))


# In the order the suites run them: the accuracy runs, the alignment runs, the chain length
# and the export, and last the timing runs, so that no timing is taken while another
# benchmark of the suite starts up.
BENCHMARKS = (
    Benchmark("accuracy_mlp", ACCURACY,
              full=(("--model=mlp", "--seeds=0,1,2",
                     "--rules=bp,fa,dfa,lra,wm,rec_lra,rec_lra-first", "--noresume"),),
              quick=(("--model=mlp", "--seeds=0", "--epochs=3", "--rules=bp,fa,wm,rec_lra",
                      "--noresume"),),
              claims=("accuracy.mlp", "accuracy.mlp_published", "convergence.mlp_epochs",
                      "convergence.mlp_seconds", "precision.mlp_bfloat16")),
    Benchmark("accuracy_mlp_sweep", ACCURACY,
              full=(("--model=mlp", "--sweep", "--noresume"),)),
    Benchmark("accuracy_resnet20", ACCURACY,
              full=(("--model=resnet20", "--seeds=0,1,2",
                     "--rules=bp,fa,dfa,lra,wm,kp,rec_lra,rec_lra-mirror_every1", "--noresume"),),
              quick=(("--model=resnet20", "--epochs=2", "--train_limit=2560",
                      "--rules=bp,rec_lra,wm,fa", "--noresume"),),
              claims=("accuracy.resnet20", "convergence.resnet20_epochs",
                      "convergence.first_epoch", "convergence.resnet20_seconds", "scaling.depth",
                      "precision.resnet20_bfloat16")),
    Benchmark("accuracy_resnet20_ablation", ACCURACY,
              full=(("--model=resnet20", "--seeds=0", f"--rules={ABLATION}", "--noresume"),)),
    Benchmark("accuracy_resnet20_sgd", ACCURACY,
              full=(("--model=resnet20", "--seeds=0,1,2", "--rules=bp,rec_lra", *SGD,
                     "--noresume"),),
              claims=("accuracy.resnet20_sgd",)),
    Benchmark("accuracy_resnet20_sgd_mirror", ACCURACY,
              full=(("--model=resnet20", "--seeds=0",
                     "--rules=rec_lra-mirror_taps_slow,rec_lra-mirror_taps_warm,"
                     "rec_lra-mirror_taps_warm_m32,rec_lra-beta0.01", *SGD, "--noresume"),
                    ("--model=resnet20", "--seeds=0,1", "--rules=rec_lra-mirror_taps_warm_m32",
                     *SGD))),
    Benchmark("accuracy_resnet20_mirror_adam", ACCURACY,
              full=(("--model=resnet20", "--seeds=0", "--rules=rec_lra-mirror_taps_warm_m32",
                     "--noresume"),)),
    Benchmark("accuracy_resnet32", ACCURACY, full=_depth("resnet32"),
              claims=("scaling.depth", "convergence.first_epoch")),
    Benchmark("accuracy_resnet56", ACCURACY, full=_depth("resnet56"), claims=("scaling.depth",)),
    # The plot of the depth study (it trains nothing: it reads the three files above).
    Benchmark("accuracy_depth", "benchmarks.accuracy.depth_plot", full=((),)),
    Benchmark("accuracy_resnet20_full", ACCURACY,
              full=(("--model=resnet20", "--train_limit=0", "--epochs=5", *SGD,
                     "--warmup_epochs=1", "--augment", "--seeds=0,1",
                     "--rules=bp,rec_lra,rec_lra-mirror_taps_warm_m32", "--noresume"),),
              claims=("scaling.full_data", "convergence.full_data_epochs",
                      "convergence.full_data_seconds")),
    Benchmark("accuracy_resnet20_bfloat16", ACCURACY,
              full=(("--model=resnet20", "--seeds=0", "--rules=bp,rec_lra",
                     "--mixed_precision=bfloat16", "--noresume"),),
              claims=("precision.resnet20_bfloat16",)),
    Benchmark("accuracy_mlp_bfloat16", ACCURACY,
              full=(("--model=mlp", "--seeds=0", "--rules=bp,rec_lra",
                     "--mixed_precision=bfloat16", "--noresume"),),
              claims=("precision.mlp_bfloat16",)),
    # Your own model: Keras models converted by from_keras, trained through --keras_model.
    Benchmark("accuracy_keras_cnn", ACCURACY,
              full=(("--model=keras_cnn", "--seeds=0,1,2", "--rules=bp,rec_lra", "--noresume"),
                    ("--model=keras_cnn", "--seeds=0", "--rules=wm,fa")),
              claims=("models.keras_cnn",)),
    Benchmark("accuracy_keras_vgg", ACCURACY,
              full=(("--model=keras_vgg", "--seeds=0,1,2", "--rules=bp,rec_lra", "--noresume"),
                    ("--model=keras_vgg", "--seeds=0", "--rules=wm,fa")),
              claims=("models.keras_vgg",)),
    Benchmark("alignment_mlp", "benchmarks.alignment.angles", full=((),),
              quick=(("--epochs=1", "--train_limit=10000", "--every=25"),),
              claims=("alignment.mlp_descent",)),
    Benchmark("alignment_resnet20", "benchmarks.alignment.angles",
              full=(("--model=resnet20", "--rules=rec_lra,wm,fa", "--every=10"),),
              quick=(("--model=resnet20", "--rules=rec_lra,wm", "--epochs=1",
                      "--train_limit=2560", "--every=5"),),
              claims=("alignment.resnet20_descent", "alignment.resnet20_mirror")),
    Benchmark("speed_chain_length", "benchmarks.speed.chain_length", full=((),),
              quick=(("--models=mlp2,mlp8,resnet8,resnet20",),),
              claims=("speed.chain_default", "speed.chain_skip_synapses")),
    Benchmark("export_artefacts", "benchmarks.export.artefacts", full=((),),
              quick=(("--models=fmnist_mlp",),), claims=("export.parity",)),
    # The timing runs, last.
    Benchmark("speed_diagnostics", "benchmarks.speed.diagnostics_overhead", full=((),),
              quick=(("--steps=600", "--repeats=2"),), claims=("speed.diagnostics",)),
    Benchmark("speed_mixed_precision", "benchmarks.speed.mixed_precision", full=((),),
              claims=("precision.float16_headroom",)),
    Benchmark("speed_step_time", "benchmarks.speed.step_time",
              full=(("--models=resnet18", "--jit=off",
                     "--rules=bp,fa,wm,kp,rec_lra,rec_lra-mirror_every1,rec_lra-fixed_synapses",
                     "--steps=4"),),
              quick=(("--quick", "--rules=bp,rec_lra,rec_lra-fixed_synapses"),),
              claims=("speed.cheaper", "speed.step_cost")),
    Benchmark("speed_step_time_b64", "benchmarks.speed.step_time",
              full=(("--models=resnet18", "--jit=off", "--resnet18_batch=64",
                     "--rules=bp,kp,rec_lra,rec_lra-mirror_every1,rec_lra-fixed_synapses",
                     "--steps=4"),),
              claims=("speed.step_cost_b64",)),
    # Our ResNet-20 step with Keras' op-by-op BatchNorm against the fused kernel.
    Benchmark("speed_batch_norm", "benchmarks.speed.step_time",
              full=(("--models=resnet20", "--jit=off",
                     "--rules=bp,fa,rec_lra,bp-keras_bn,fa-keras_bn,rec_lra-keras_bn",
                     "--steps=4"),)),
    # keras.applications.ResNet50 converted, beside the resnet50 preset, in one round-robin.
    Benchmark("speed_keras_resnet50", "benchmarks.speed.step_time",
              full=(("--models=resnet50,keras_resnet50", "--jit=off", "--rules=bp,rec_lra",
                     "--group=all", "--steps=2", "--repeats=4"),),
              claims=("models.keras_resnet50",)),
    # Against BioTorch: needs the `peers` extra in a venv of its own (`make bench-peers`).
    Benchmark("peers_biotorch", "benchmarks.peers.biotorch", full=(("--noresume",),),
              quick=(("--seeds=0", "--epochs=1", "--train_limit=2560", "--timing_rounds=2",
                      "--timing_steps=2", "--noresume"),),
              claims=("peers.accuracy_gap", "peers.bp_fa_steps", "peers.rec_lra_step"),
              needs="peers"),
)
BY_NAME = {b.name: b for b in BENCHMARKS}


def get(name):
    """The `Benchmark` named `name`.

    Raises:
        ValueError: for an unknown name (the message lists the benchmarks).
    """
    if name not in BY_NAME:
        raise ValueError(f"Expected a benchmark among {list(BY_NAME)}, received: {name!r}")
    return BY_NAME[name]


def suite(name):
    """The benchmarks the suite `name` ("quick" or "full") runs, in order (not those that need
    an extra)."""
    if name not in ("quick", "full"):
        raise ValueError(f"Expected suite 'quick' or 'full', received: suite={name!r}")
    return [b for b in BENCHMARKS if b.needs is None and (name == "full" or b.quick is not None)]


def feeding(claim):
    """The benchmarks whose results feed `claim`, in order."""
    return [b for b in BENCHMARKS if claim in b.claims]
