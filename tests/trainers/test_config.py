"""The trainer's configuration: flags generated from `Config`, rule parameters from the rule
classes, flags that do not apply, the shared command-line conventions, old config files."""

import dataclasses
import inspect
import json
import os

import pytest
from absl import app, flags
from test_train import run_main

from rlra_tf import rules
from trainers import cli, config_flags, errors, presets, train, workdirs


@pytest.fixture
def parsed():
    """Parses a command line into the global flags; unparses afterwards."""

    def parse(*argv):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["train", *argv])
        return config_flags.overrides()

    yield parse
    flags.FLAGS.unparse_flags()


def test_every_field_is_a_flag_that_overrides_only_itself(parsed):
    for name in presets.FIELDS:
        assert name in flags.FLAGS, name
        assert flags.FLAGS[name].default is None, name  # unset: the preset's value
    assert parsed() == {}
    changes = parsed("--hidden_units=8,4", "--width=none", "--noaugment", "--clip_norm=1.5",
                     "--mirror_batch=32", "--feedback=skip", "--mirror_warm_start",
                     "--learning_rate=0.01", "--epochs=3", "--image_shape=28,28,1",
                     "--train_limit=none")
    assert changes == {"hidden_units": (8, 4), "width": None, "augment": False,
                       "clip_norm": 1.5, "mirror_batch": 32, "feedback": "skip",
                       "mirror_warm_start": True, "learning_rate": 0.01, "epochs": 3,
                       "image_shape": (28, 28, 1), "train_limit": None}
    assert [type(changes[k]) for k in ("clip_norm", "mirror_batch", "epochs")] == \
        [float, int, int]
    config = presets.override(presets.get("tiny_mlp"), **changes)
    assert config.train_limit is None and config.hidden_units == (8, 4)  # back to all data
    with pytest.raises(flags.IllegalFlagValueError, match="expected an integer, received: 'x'"):
        parsed("--epochs=x")
    with pytest.raises(flags.IllegalFlagValueError, match="comma-separated integers"):
        parsed("--hidden_units=8,wide")


def test_help_lists_every_flag_with_its_choices_and_the_default_presets_value():
    text = " ".join(flags.FLAGS.module_help(train).split())  # unwrapped
    for name in presets.FIELDS + ("preset", "workdir", "overwrite", "list_presets"):
        assert f"--{name}:" in text or f"--[no]{name}:" in text, name
    assert "One of: sgd, adam, adamw." in text
    assert "Default: the preset's (fmnist_mlp: 0.001)." in text  # learning_rate
    assert "Rules: rec_lra, lra." in text  # beta
    assert "how far a target is displaced" in text  # beta's help, from RecLRA's docstring


def test_rule_parameters_are_the_rule_classes_init_parameters():
    expected = {}
    for name, cls in rules.RULES.items():
        for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                expected.setdefault(p.name, []).append(name)
    assert {n: list(p.rules) for n, p in presets.RULE_PARAMETERS.items()} == expected
    assert set(expected) <= set(presets.FIELDS)
    beta = presets.RULE_PARAMETERS["beta"]
    assert beta.default == 0.1 and beta.help.startswith("how far a target is displaced")
    # The resolved default of a parameter whose __init__ default is None.
    assert presets.RULE_PARAMETERS["feedback"].default == "adjacent"


def test_a_new_rule_parameter_needs_nothing_in_the_trainer(monkeypatch):
    """A rule gaining a parameter (its __init__, get_config and docstring) gains a field, a
    flag type and a help text: `rule_parameters` reads them from the class."""

    class KickRule(rules.FA):
        """FA with a kick.

        Args:
            kick: how hard the kick is,
                in units of the error.
            synapse_update: as `FA`.
        """

        name = "kick"

        def __init__(self, kick=0.5, synapse_update=None):
            super().__init__(synapse_update=synapse_update)
            self.kick = kick

        def get_config(self):
            return dict(super().get_config(), kick=self.kick)

    monkeypatch.setitem(rules.RULES, "kick", KickRule)
    found = presets.rule_parameters()
    assert found["kick"] == presets.RuleParameter(
        "kick", ("kick",), 0.5, "how hard the kick is, in units of the error.")
    assert "kick" in found["synapse_update"].rules
    field = dataclasses.field(metadata={"rule_parameter": found["kick"]})
    field.name = "kick"
    assert config_flags._kind(field) == "float"


BAD = [
    (["--model=resnet20", "--hidden_units=8,8"],
     "--hidden_units=(8, 8) does not apply: it is used only with model='mlp' (received: "
     "model='resnet20'); remove it"),
    (["--width=8"], "--width=8 does not apply: it is not used with model='mlp'; remove it"),
    (["--rule=fa", "--beta=0.2"],
     "--beta=0.2 does not apply: rule 'fa' takes norm_feedback, synapse_update, mirror_rate, "
     "mirror_batch, mirror_every, mirror_normalise, mirror_warm_start, mirror_first_scale, "
     "mirror_track; remove it"),
    (["--momentum=0.5"], "--momentum=0.5 does not apply: it is used only with optimizer='sgd' "
     "(received: optimizer='adam'); remove it"),
    (["--step_epochs=1"], "--step_epochs=(1,) does not apply: it is used only with "
     "schedule='step' (received: schedule='constant'); remove it"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=lambda v: str(v)[:30])
def test_a_flag_the_model_or_rule_ignores_is_refused(argv, message, tmp_path, capsys):
    workdir = tmp_path / "run"
    code, _, err = run_main(["--preset=tiny_mlp", f"--workdir={workdir}", *argv], capsys)
    assert code == 2
    assert err == f"rlra-train: error: {message}\n"
    assert not workdir.exists()


def test_flag_errors_and_stray_arguments_exit_2_with_one_line(capsys):
    flags.FLAGS.unparse_flags()
    try:
        for argv, message in [
            (["train", "--epochs=x"], "rlra-train: error: flag --epochs=x: expected an "
                                      "integer, received: 'x'\n"),
            (["train", "--bogus=1"], "rlra-train: error: Unknown command line flag 'bogus'\n"),
            (["train", "runs/x"], "rlra-train: error: Unexpected arguments: runs/x (flags take "
                                  "the form --name=value; --help lists them)\n"),
        ]:
            with pytest.raises(SystemExit) as exit_:
                cli.parse_flags(argv, "rlra-train")
            assert exit_.value.code == 2
            assert capsys.readouterr().err == message
            flags.FLAGS.unparse_flags()
        app.define_help_flags()  # what app.run does first
        with pytest.raises(SystemExit) as exit_:
            cli.parse_flags(["train", "--help"], "rlra-train")
        assert exit_.value.code == 0 and "--helpfull" in capsys.readouterr().out  # usage printed
    finally:
        flags.FLAGS.unparse_flags()


@pytest.mark.parametrize("case", ["file", "under_a_file", "unwritable"])
def test_an_unusable_workdir_exits_2_with_one_line(case, tmp_path, capsys):
    """Refused before the data are read (no --data_dir: nothing is prepared)."""
    (tmp_path / "file").write_text("")
    workdir = {"file": tmp_path / "file", "under_a_file": tmp_path / "file" / "run",
               "unwritable": "/proc/rlra_tf_run/x"}[case]  # /proc takes no new folder, root or not
    code, _, err = run_main(["--preset=tiny_mlp", f"--workdir={workdir}"], capsys)
    assert code == 2
    assert err == "rlra-train: error: workdir='{}' {}\n".format(workdir, {
        "file": "exists and is not a directory",
        "under_a_file": f"cannot be created: {tmp_path / 'file'} is a file",
        "unwritable": "cannot be created: No such file or directory"}[case])
    assert not os.path.exists("/proc/rlra_tf_run")


def test_a_config_json_written_before_a_field_existed_is_the_same_run(tmp_path):
    config = presets.get("tiny_mlp")
    stored = config.to_json()
    del stored["mirror_warm_start"], stored["steps_per_execution"]  # fields added later
    (tmp_path / "config.json").write_text(json.dumps(stored))
    (tmp_path / "metrics.json").write_text("{}")
    assert workdirs.prepare_workdir(str(tmp_path), config, overwrite=False) == "complete"
    more = presets.override(config, epochs=config.epochs + 3)
    assert workdirs.prepare_workdir(str(tmp_path), more, overwrite=False) == "extend"
    fewer = presets.override(config, epochs=1)
    with pytest.raises(errors.TrainerError, match="different config \\(epochs: 2 -> 1\\)"):
        workdirs.prepare_workdir(str(tmp_path), fewer, overwrite=False)
    (tmp_path / "metrics.json").unlink()
    assert workdirs.prepare_workdir(str(tmp_path), more, overwrite=False) == "resume"
