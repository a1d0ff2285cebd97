"""Every Python snippet of docs/MODELS.md and docs/RULES.md runs, in order, as a user would paste
them (one namespace per document, in a fresh working directory)."""

import os
import re

import pytest

from rlra_tf import rules

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def snippets(name):
    with open(os.path.join(DOCS, name)) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


@pytest.mark.parametrize("name, at_least", [("MODELS.md", 6), ("RULES.md", 3)])
def test_every_snippet_runs(name, at_least, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = snippets(name)
    assert len(code) >= at_least
    namespace = {"__name__": f"docs_{name[:-3].lower()}"}
    try:
        for i, snippet in enumerate(code):
            try:
                exec(compile(snippet, f"{name} snippet {i + 1}", "exec"), namespace)
            except Exception as err:  # name the snippet in the failure
                raise AssertionError(f"{name} snippet {i + 1} failed: {err!r}") from err
    finally:
        rules.RULES.pop("drtp", None)  # the RULES.md example registers one
    out = capsys.readouterr().out
    if name == "MODELS.md":
        assert "softmax" in out and "Cannot convert layer 'lstm' (LSTM)" in out
    else:
        assert "DRTP(scale=0.5)" in out
