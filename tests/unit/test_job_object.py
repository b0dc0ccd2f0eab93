"""nodefile.job: Job, Entries and Values: access by name, position and attribute."""
from __future__ import annotations

import json

import pytest

import nodefile
from nodefile.jobctx import Entries, Job, Values, job


@pytest.fixture
def manifest():
    return {
        "format": 1,
        "node": "model",
        "project": "churn",
        "root": "/proj",
        "inputs": [{"name": "raw", "value": "data/raw.csv"}, {"name": None, "value": "lib/util.R"},
                   {"name": "parts", "value": ["p/a.csv", "p/b.csv"]}],
        "outputs": [{"name": "model", "value": "models/model.rds"}, {"name": "metrics", "value": "m.json"}],
        "params": {"seed": 42, "alpha": 0.5},
        "wildcards": {"model": "lin"},
        "recipe": {"kind": "python", "name": "python", "target": "t.py", "args": []},
        "attempt": 2,
        "resources": {"cores": 2.0},
        "log": "/proj/.nodefile/logs/model.log",
    }


def test_job_fields(manifest):
    j = Job(manifest)
    assert j.node == "model" and j.attempt == 2 and j.root == "/proj"
    assert j.log == "/proj/.nodefile/logs/model.log"
    assert j.resources.cores == 2.0
    assert j.manifest is manifest
    assert repr(j) == "Job(node='model')"


def test_entries_by_attribute_name_and_position(manifest):
    j = Job(manifest)
    assert j.inputs.raw == "data/raw.csv"
    assert j.inputs["raw"] == "data/raw.csv"
    assert j.inputs[0] == "data/raw.csv"
    assert j.inputs[1] == "lib/util.R"
    assert j.inputs[-1] == ["p/a.csv", "p/b.csv"]
    assert j.inputs.parts == ["p/a.csv", "p/b.csv"]
    assert j.outputs.model == "models/model.rds" and j.outputs[1] == "m.json"


def test_entries_collection_protocol(manifest):
    e = Job(manifest).inputs
    assert len(e) == 3
    assert list(e) == ["data/raw.csv", "lib/util.R", ["p/a.csv", "p/b.csv"]]
    assert e.names() == ["raw", None, "parts"]
    assert e.items()[0] == ("raw", "data/raw.csv")
    assert e.paths() == ["data/raw.csv", "lib/util.R", "p/a.csv", "p/b.csv"]
    assert "Entries(" in repr(e)


def test_entries_errors(manifest):
    e = Job(manifest).inputs
    with pytest.raises(AttributeError, match=r"no entry named 'rwa' \(raw, parts\)"):
        e.rwa
    with pytest.raises(KeyError):
        e["rwa"]
    with pytest.raises(IndexError):
        e[3]
    assert not hasattr(e, "rwa")
    assert getattr(e, "rwa", "dflt") == "dflt"


def test_private_attributes_are_not_entries():
    e = Entries([{"name": "_hidden", "value": "x"}])
    with pytest.raises(AttributeError):
        e._hidden
    assert e["_hidden"] == "x"


def test_unnamed_entries_error_says_none_are_named():
    with pytest.raises(AttributeError, match="none are named"):
        Entries([{"value": "a"}]).a


def test_entries_slice_gives_values():
    e = Entries([{"name": "a", "value": "1"}, {"name": "b", "value": "2"}, {"name": "c", "value": "3"}])
    assert list(e[0:2]) == ["1", "2"]


def test_entry_names_that_shadow_methods_are_reachable_by_attribute():
    # `inputs = { items = "items.csv", paths = "paths.csv" }` is a natural Nodefile
    e = Entries([{"name": "items", "value": "items.csv"}, {"name": "paths", "value": "paths.csv"}])
    assert e["items"] == "items.csv"
    assert e.items == "items.csv"
    assert e.paths == "paths.csv"


def test_values_by_attribute_and_key(manifest):
    j = Job(manifest)
    assert j.params.seed == 42 and j.params["alpha"] == 0.5
    assert j.wildcards.model == "lin"
    assert dict(j.params) == {"seed": 42, "alpha": 0.5}
    assert isinstance(j.params, dict)


def test_values_errors(manifest):
    j = Job(manifest)
    with pytest.raises(AttributeError, match=r"no param 'sed' \(declared: seed, alpha\)"):
        j.params.sed
    with pytest.raises(KeyError):
        j.params["sed"]
    with pytest.raises(AttributeError, match="declared: none"):
        Values().x
    assert not hasattr(j.params, "sed")


def test_param_names_that_shadow_dict_methods_are_reachable_by_attribute():
    v = Values({"values": [1, 2], "keys": "k", "items": 3})
    assert v["values"] == [1, 2]
    assert v.values == [1, 2]
    assert v.items == 3


def test_job_defaults_for_optional_fields():
    j = Job({"node": "n", "inputs": [], "outputs": []})
    assert j.params == {} and j.wildcards == {} and j.resources == {}
    assert j.attempt == 1 and j.log is None and j.root is None
    assert len(j.inputs) == 0 and j.inputs.paths() == []


def test_job_from_env(tmp_path, monkeypatch, manifest):
    path = tmp_path / "job.json"
    path.write_text(json.dumps(manifest))
    monkeypatch.setenv("NODEFILE_JOB", str(path))
    j = job()
    assert j.node == "model" and j.inputs.raw == "data/raw.csv"


def test_nodefile_job_stays_callable_after_the_job_module_is_imported(tmp_path, monkeypatch, manifest):
    # `job = nodefile.job()` in a recipe; calling it a second time (or after anything
    # imported nodefile.job, the submodule) must still work: the submodule import must not
    # replace the package attribute `nodefile.job` (the function) with the module.
    import importlib
    importlib.import_module("nodefile.jobctx")
    path = tmp_path / "job.json"
    path.write_text(json.dumps(manifest))
    monkeypatch.setenv("NODEFILE_JOB", str(path))
    assert callable(nodefile.job)
    assert nodefile.job().params.seed == 42
    assert nodefile.job().node == "model"


def test_job_outside_a_build_without_target(monkeypatch):
    monkeypatch.delenv("NODEFILE_JOB", raising=False)
    with pytest.raises(RuntimeError, match="pass a target"):
        job()


def test_job_for_a_target_computed_from_the_nodefile(project, monkeypatch):
    monkeypatch.delenv("NODEFILE_JOB", raising=False)
    project.write('''
        [params]
        seed = 7

        [nodes.clean]
        outputs = { csv = "data/clean.csv" }
        inputs = { raw = "data/raw.csv", more = ["data/a b.csv", "data/c.csv"] }
        params = ["seed", { alpha = 0.5 }]
        python = "tasks/clean.py"
        ''', files=["data/raw.csv", "data/a b.csv", "data/c.csv", "tasks/clean.py"])
    j = job("clean", path=str(project.root))
    assert j.node == "clean"
    assert j.inputs.raw == "data/raw.csv" and j.inputs[1] == ["data/a b.csv", "data/c.csv"]
    assert j.outputs.csv == "data/clean.csv"
    assert j.params.seed == 7 and j.params.alpha == 0.5
