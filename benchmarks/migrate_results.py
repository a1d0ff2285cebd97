"""One-off: the result files of 2026-11-26..30 brought to the layout of the benchmarks by concept.

Run once (`python -m benchmarks.migrate_results`), committed with its output, then deleted:
nothing reads the old layout afterwards. Measured values are never changed; what changes:

- file names: `<package>_<what>.json` (`resnet_accuracy.json` -> `accuracy_resnet20.json`,
  `step_time.json` -> `speed_step_time.json`, ...), PNGs beside them;
- one-off and superseded files to `results/archive/` (`mlp_sweep_session1.json`,
  `resnet_accuracy_fused.json`);
- rule variants with one spelling (`rec_lra_first` -> `rec_lra-first`, `rec_lra_nomirror` ->
  `rec_lra-fixed_synapses`, `rec_lra_every4` -> `rec_lra-mirror_every4`, `rec_lra_m32` ->
  `rec_lra-mirror_m32`, `rec_lra_skip` -> `rec_lra-skip_synapses`, `bp_keras_bn` ->
  `bp-keras_bn`, ...);
- every run's trainer config holds every field: the fields added after a run was made take
  the value that run had (`mixed_precision` "off"; the mirror's options `None`, the default;
  for the runs made before rec-LRA's revision of 2026-11-30, rec_lra's then-behaviour written
  out: `feedback="skip", error_scale="raw", norm_feedback="skip", synapse_update="lra"`);
- one run layout for the MLP and the ResNets (`rule`: the variant name; `final_test_accuracy`
  as it was, the trainer's own in `trainer_test_accuracy` too; `wall_seconds`
  without the per-epoch test passes and `wall_seconds_including_per_epoch_tests` with them);
  the budget as a dict; what the report computes is no longer stored (summaries, ratios,
  "bar", flattened per-epoch rows);
- `machine.load_average` present everywhere (`None` where not recorded), and a note on the
  files measured with rec-LRA before its revision.
"""

import glob
import json
import os
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")

RENAMES = {
    "accuracy_mlp": "accuracy_mlp", "accuracy_mlp_bf16": "accuracy_mlp_bfloat16",
    "mlp_sweep": "accuracy_mlp_sweep", "resnet_accuracy": "accuracy_resnet20",
    "resnet32_accuracy": "accuracy_resnet32", "resnet56_accuracy": "accuracy_resnet56",
    "resnet_ablation": "accuracy_resnet20_ablation", "resnet_sgd": "accuracy_resnet20_sgd",
    "resnet_sgd_mirror": "accuracy_resnet20_sgd_mirror",
    "resnet_mirror_options": "accuracy_resnet20_mirror_adam",
    "resnet_full": "accuracy_resnet20_full", "resnet_accuracy_bf16": "accuracy_resnet20_bfloat16",
    "resnet_depth": "accuracy_depth", "alignment": "alignment_mlp",
    "alignment_resnet20": "alignment_resnet20", "chain_length": "speed_chain_length",
    "step_time": "speed_step_time", "step_time_bn": "speed_batch_norm",
    "mixed_precision": "speed_mixed_precision", "diagnostics_overhead": "speed_diagnostics",
    "export_bench": "export_artefacts", "peers": "peers_biotorch",
}
ARCHIVE = ("mlp_sweep_session1", "resnet_accuracy_fused")
RULES = {
    "rec_lra_first": "rec_lra-first", "rec_lra_nomirror": "rec_lra-fixed_synapses",
    "rec_lra_every4": "rec_lra-mirror_every4", "rec_lra_m32": "rec_lra-mirror_m32",
    "rec_lra_skip": "rec_lra-skip_synapses", "bp_keras_bn": "bp-keras_bn",
    "fa_keras_bn": "fa-keras_bn", "rec_lra_keras_bn": "rec_lra-keras_bn",
}
MIRROR_FIELDS = ("mirror_rate", "mirror_batch", "mirror_every", "mirror_normalise",
                 "mirror_warm_start")
REVISION_FIELDS = ("error_scale", "norm_feedback", "synapse_update") + MIRROR_FIELDS
FIRST_RECONSTRUCTION = {"feedback": "skip", "error_scale": "raw", "norm_feedback": "skip",
                        "synapse_update": "lra"}
BEFORE_REVISION = (
    "Measured before rec-LRA's revision of 2026-11-30 (errors through BatchNorm, beta-scaled "
    "error units, the weight mirror): rec_lra here is what the library then ran, "
    "RecLRA(feedback='skip', error_scale='raw', norm_feedback='skip', synapse_update='lra'), "
    "the variant rec_lra-first today.")
DERIVED_STEP_KEYS = ("ratio_to_bp", "cpu_ratio_to_bp", "mean_cpu_ratio_to_bp",
                     "step_over_forward", "cpu_step_over_forward", "mirror_share_of_cpu",
                     "images_per_second")
# The budget keys an accuracy file keeps (in this order).
BUDGET_KEYS = ("preset", "model", "dataset", "train_examples", "epochs", "batch_size",
               "optimizer", "learning_rate", "momentum", "weight_decay", "schedule", "augment",
               "mixed_precision", "test", "jit_compile")
SWEEP_VARIES = ("batch_size", "learning_rate", "schedule")


def rule(name):
    return RULES.get(name, name)


def migrate_config(config, before_revision):
    config = dict(config)
    config.setdefault("mixed_precision", "off")
    for key in REVISION_FIELDS:
        config.setdefault(key, None)
    if before_revision and config["rule"] == "rec_lra":
        for key, value in FIRST_RECONSTRUCTION.items():
            if config.get(key) is None:
                config[key] = value
    return config


def mlp_budget(config):
    return {
        "preset": "fmnist_mlp", "model": "MLP 784-256-256-256-10 tanh",
        "dataset": config["dataset"], "train_examples": config["train_limit"] or 58000,
        "epochs": config["epochs"], "batch_size": config["batch_size"],
        "optimizer": config["optimizer"], "learning_rate": config["learning_rate"],
        "momentum": config["momentum"] if config["optimizer"] == "sgd" else None,
        "weight_decay": config["weight_decay"],
        "schedule": f"{config['schedule']} after {config['warmup_epochs']} epochs of linear "
                    "warm-up",
        "augment": config["augment"], "mixed_precision": config["mixed_precision"],
        "test": "full 10,000-image test split after every epoch",
        "jit_compile": config["jit_compile"],
    }


def migrate_accuracy(data, name):
    sweep = name == "accuracy_mlp_sweep"
    before = sweep  # the only accuracy file made before the revision
    runs = []
    for r in data["runs"]:
        config = migrate_config(r["config"], before)
        tests = sum(e["test_eval_seconds"] for e in r["epochs"])
        if "variant" in r:  # the MLP's layout
            run = {"rule": config["rule"] if sweep else rule(r["variant"]), "seed": r["seed"]}
            if sweep:
                run.update(setting=r["variant"], label=r["label"])
            # final_test_accuracy stays the trainer's (float32: it differs from the last
            # per-epoch test, which the ResNet files hold, by 1e-8 at most).
            run.update(config=config, epochs=r["epochs"],
                       final_test_accuracy=r["final_test_accuracy"],
                       final_test_loss=r["epochs"][-1]["test_loss"],
                       trainer_test_accuracy=r["final_test_accuracy"],
                       mean_seconds_per_epoch=r["mean_seconds_per_epoch"],
                       steps_per_epoch=r["steps_per_epoch"], wall_seconds=r["wall_seconds"],
                       wall_seconds_including_per_epoch_tests=r[
                           "wall_seconds_including_per_epoch_tests"])
        else:  # the ResNets': wall_seconds included the per-epoch tests
            run = {"rule": rule(r["rule"]), "seed": r["seed"], "config": config,
                   "epochs": r["epochs"], "final_test_accuracy": r["final_test_accuracy"],
                   "final_test_loss": r["epochs"][-1]["test_loss"],
                   "trainer_test_accuracy": r["trainer_test_accuracy"],
                   "mean_seconds_per_epoch": r["mean_seconds_per_epoch"],
                   "steps_per_epoch": r["steps_per_epoch"],
                   "wall_seconds": r["wall_seconds"] - tests,
                   "wall_seconds_including_per_epoch_tests": r["wall_seconds"]}
        runs.append(run)
    if isinstance(data["budget"], dict):
        budget = dict(data["budget"], mixed_precision=data["budget"].get("mixed_precision",
                                                                          "off"))
        budget["jit_compile"] = "off" if budget.get("jit_compile") is False else \
            budget.get("jit_compile")
        budget = {k: budget.get(k) for k in BUDGET_KEYS}
        model = budget["model"]
    else:
        budget = mlp_budget(runs[0]["config"])
        model = budget["model"]
        if sweep:
            budget = {k: v for k, v in budget.items() if k not in SWEEP_VARIES}
            budget["per_setting"] = "batch size, learning rate, schedule, rule and its parameters"
    out = {"benchmark": name, "preset": budget["preset"], "model": model, "budget": budget,
           "machine": machine(data), "versions": data["versions"], "date": data["date"],
           "runs": runs, "complete": data.get("complete", True)}
    if before:
        out["notes"] = BEFORE_REVISION
    return out


def machine(data):
    m = dict(data.get("machine") or {})
    m["load_average"] = list(m["load_average"]) if m.get("load_average") else None
    return m


def migrate_steps(data, name):
    rows = []
    for r in data["results"]:
        r = {k: v for k, v in r.items() if k not in DERIVED_STEP_KEYS}
        r["rule"] = rule(r["rule"])
        rows.append(r)
    settings = dict(data["settings"], rules=[rule(x) for x in data["settings"]["rules"]])
    return {"benchmark": name, "machine": machine(data), "versions": data["versions"],
            "date": data["date"], "settings": settings, "results": rows}


def migrate_chain(data, name):
    rows = [dict(r, rule=rule(r["rule"])) for r in data["results"]]
    return {"benchmark": name, "definition": data["definition"], "machine": machine(data),
            "versions": data["versions"], "date": data["date"], "results": rows}


def steps_until_aligned(steps, angles, limit=20.0):
    """alignment.angles' definition: the first probe step from which every synapse stays
    within `limit` degrees of its kernel; None if never."""
    if not angles:
        return None
    ok = [all(v[i] is not None and v[i] < limit for v in angles.values())
          for i in range(len(steps))]
    return next((steps[i] for i in range(len(steps)) if all(ok[i:])), None)


def migrate_alignment(data, name):
    rules = {}
    for rule_name, r in data["rules"].items():
        r = dict(r)
        if "synapse_angle" not in r:  # the MLP has no projections: its synapses are F's
            r["synapse_angle"] = {u: v for u, v in r["feedback_angle"].items()
                                  if any(x is not None for x in v)}
        if "steps_until_all_synapses_within_20deg" not in r:
            r["steps_until_all_synapses_within_20deg"] = steps_until_aligned(
                r["steps"], r["synapse_angle"]) if rule_name in ("rec_lra", "wm") else None
        rules[rule_name] = r
    out = {"benchmark": name, "preset": data["preset"], "model": data["model"],
           "budget_changes": data.get("budget_changes", {}), "epochs": data["epochs"],
           "every_n_steps": data["every_n_steps"], "train_limit": data["train_limit"],
           "seed": data["seed"], "machine": machine(data), "versions": data["versions"],
           "date": data["date"], "rules": rules}
    if data["date"] < "2026-11-30":
        out["notes"] = BEFORE_REVISION
    return out


def migrate_mixed(data, name):
    rows = [{k: v for k, v in r.items() if k != "cpu_ratio_to_float32"} for r in data["results"]]
    return {"benchmark": name, "machine": machine(data), "versions": data["versions"],
            "date": data["date"], "settings": data["settings"], "results": rows,
            "float16_headroom": data["float16_headroom"]}


def migrate_overhead(data, name):
    out = dict(data, benchmark=name, machine=machine(data))
    if data["date"] < "2026-11-30":
        out["notes"] = BEFORE_REVISION
    return out


def migrate_export(data, name, date):
    out = {"benchmark": name, "machine": machine(data), "versions": data["versions"],
           "date": date, "trained_model": data["trained_model"], "rows": data["rows"]}
    if date is None:
        out["notes"] = "The run's date was not recorded (the script did not record it then)."
    return out


def migrate_depth(data, name):
    sources = {m: dict(s, path=os.path.join("benchmarks", "results", RENAMES[os.path.splitext(
        os.path.basename(s["path"]))[0]] + ".json")) for m, s in data["sources"].items()}
    return {"benchmark": name, "machine": machine(data), "versions": data["versions"],
            "date": data["date"], "gaps": data["gaps"], "seeds": data["seeds"],
            "sources": sources}


def migrate_peers(data, name):
    runs = []
    for r in data["runs"]:
        r = dict(r)
        if r["library"] == "rlra_tf":
            r["config"] = migrate_config(r["config"], False)
            source = dict(r["source"], file="benchmarks/results/accuracy_resnet20.json")
            r["source"] = source
            r["key"] = {"config": r["config"], "source": source}
            r["final_test_loss"] = r["epochs"][-1]["test_loss"]
        # Both libraries' wall_seconds included the per-epoch tests.
        tests = sum(e["test_eval_seconds"] for e in r["epochs"])
        r["wall_seconds_including_per_epoch_tests"] = r["wall_seconds"]
        r["wall_seconds"] -= tests
        runs.append(r)
    step_time = {k: v for k, v in data["step_time"].items() if k != "ratios"}
    text = data["rlra_tf_runs"].replace("benchmarks/results/resnet_accuracy.json",
                                        "benchmarks/results/accuracy_resnet20.json")
    keep = ("title", "budget", "settings", "forward_params")
    return {"benchmark": name, "machine": machine(data), "versions": data["versions"],
            "date": data["date"], **{k: data[k] for k in keep}, "rlra_tf_runs": text,
            "runs": runs, "step_time": step_time}


def migrate_suite(data):
    records = []
    for r in data["benchmarks"]:
        records.append(dict(r, name=RENAMES[r["name"]]))
    return dict(data, benchmarks=records)


KINDS = {
    "accuracy": migrate_accuracy, "speed_step_time": migrate_steps,
    "speed_batch_norm": migrate_steps, "speed_chain_length": migrate_chain,
    "speed_mixed_precision": migrate_mixed,
    "speed_diagnostics": migrate_overhead, "accuracy_depth": migrate_depth,
    "peers_biotorch": migrate_peers,
}


def migrate(folder, suite_log=None):
    for old, new in RENAMES.items():
        path = os.path.join(folder, old + ".json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            data = json.load(f)
        if new == "export_artefacts":
            started = {r["name"]: r["started"] for r in (suite_log or {}).get("benchmarks", [])}
            out = migrate_export(data, new, started.get(old))
        elif new in KINDS:
            out = KINDS[new](data, new)
        elif new.startswith("alignment"):
            out = migrate_alignment(data, new)
        else:
            out = migrate_accuracy(data, new)
        os.remove(path)
        with open(os.path.join(folder, new + ".json"), "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
        png = os.path.join(folder, old + ".png")
        if os.path.exists(png) and old != new:
            shutil.move(png, os.path.join(folder, new + ".png"))


def main():
    archive = os.path.join(RESULTS, "archive")
    os.makedirs(archive, exist_ok=True)
    for name in ARCHIVE:
        for path in glob.glob(os.path.join(RESULTS, name + ".*")):
            shutil.move(path, os.path.join(archive, os.path.basename(path)))
    quick = os.path.join(RESULTS, "quick")
    log_path = os.path.join(quick, "suite_run.json")
    with open(log_path) as f:
        log = json.load(f)
    migrate(RESULTS)
    migrate(quick, log)
    with open(log_path, "w") as f:
        json.dump(migrate_suite(log), f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
