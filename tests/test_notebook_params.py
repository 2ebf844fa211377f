"""Each notebook's parameters are fields of its stage's config, with the same defaults.

The options are declared once, in the config dataclasses; a notebook's `parameters` cell repeats
the ones a user sets most (papermill needs plain assignments there), and this test keeps the two
from drifting apart. A few names belong to the notebook alone (where to clone from, how to serve).
"""

import ast
import dataclasses
import importlib
import typing

import papermill
import pytest

from utils.config import convert, defaults

NOTEBOOKS = {
    "01_feature_pipeline.ipynb": (("utils.featurize", "FeatureConfig"),),
    "02_training_pipeline.ipynb": (("utils.train", "TrainConfig"),),
    "03_inference_app.ipynb": (
        ("utils.transcribe", "TranscribeOptions"),
        ("utils.app", "AppOptions"),
    ),
}
NOTEBOOK_ONLY = {
    "01_feature_pipeline.ipynb": {"repo_url", "pack"},
    "02_training_pipeline.ipynb": {"repo_url", "extra"},
    "03_inference_app.ipynb": {
        "repo_url",
        "model",
        "export_ct2",
        "share",
        "server_port",
        "launch_mode",
        "check_audio",
        "check_output",
    },
}


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS))
def test_parameters_are_config_fields_with_the_same_defaults(repo_root, notebook):
    classes = [getattr(importlib.import_module(m), name) for m, name in NOTEBOOKS[notebook]]
    params = papermill.inspect_notebook(str(repo_root / notebook))
    assert params, f"{notebook}: no parameters cell"
    for name, info in params.items():
        if name in NOTEBOOK_ONLY[notebook]:
            continue
        owner = next((c for c in classes if name in {f.name for f in dataclasses.fields(c)}), None)
        assert owner is not None, f"{notebook}: parameter {name!r} is no field of {classes}"
        hint = typing.get_type_hints(owner)[name]
        value = convert(f"{owner.__name__}.{name}", hint, ast.literal_eval(info["default"]))
        expected = defaults(owner)[name]
        assert value == expected, (
            f"{notebook}: {name} = {value!r}, {owner.__name__} says {expected!r}"
        )
        assert info["help"], f"{notebook}: parameter {name!r} has no comment"
