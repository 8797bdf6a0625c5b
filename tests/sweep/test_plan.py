import pytest
from omegaconf import OmegaConf

from sweepbook.config import ConfigError, composition
from sweepbook.notebook import Notebook, inspect
from sweepbook.params import config_params
from sweepbook.sweep import plan as planning
from sweepbook.sweep.plan import (SweepDefinitionError, expand, merge_overrides, read_sweep_file,
                                  short_name, sweep_id)
from sweepbook.tracking.record import config_hash

from conftest import ROOT

TRAIN = inspect(ROOT / "notebooks" / "train.ipynb")


def plan(overrides, sweep_file=None):
    return planning.plan(TRAIN, overrides, sweep_file)


def test_grid_is_the_full_product_in_hydra_order():
    assert expand(["model=cnn,mlp", "optimizer.lr=1e-3,1e-2", "+note=x"]) == [
        ["model=cnn", "optimizer.lr=0.001", "+note=x"],
        ["model=cnn", "optimizer.lr=0.01", "+note=x"],
        ["model=mlp", "optimizer.lr=0.001", "+note=x"],
        ["model=mlp", "optimizer.lr=0.01", "+note=x"],
    ]


def test_hydra_sweep_functions_and_quoting():
    assert expand(["seed=range(0,3)"]) == [["seed=0"], ["seed=1"], ["seed=2"]]
    assert expand(["optimizer=choice(adam,sgd)"]) == [["optimizer=adam"], ["optimizer=sgd"]]
    assert expand(["model=glob(*)"]) == [["model=cnn"], ["model=mlp"], ["model=resnet18"]]
    assert expand(["model=glob(*,exclude=resnet*)"]) == [["model=cnn"], ["model=mlp"]]
    assert expand(['runname="a,b"']) == [['runname="a,b"']]


def test_parse_errors_show_hydras_caret():
    with pytest.raises(SweepDefinitionError, match=r"(?s)model=cnn,mlp;.*\^"):
        expand(["model=cnn,mlp;"])


def test_every_invalid_job_is_reported_before_anything_runs():
    with pytest.raises(SweepDefinitionError) as error:
        plan(["model=cnn,nope", "training.epochs=2,abc"])
    message = str(error.value)
    assert message.startswith("3 of 4 jobs are invalid against conf/train.yaml; nothing was run")
    assert "job 1 (model=cnn training.epochs=abc)" in message and "Integer" in message
    assert "job 2 (model=nope training.epochs=2)" in message and "resnet18" in message
    with pytest.raises(SweepDefinitionError, match="trainig"):
        plan(["trainig.epochs=1,2"])


def test_one_sweep_one_experiment():
    with pytest.raises(SweepDefinitionError, match="one expname"):
        plan(["expname=a,b"])


def test_sweep_file_by_name_or_path_and_command_line_wins(tmp_path):
    assert read_sweep_file("lr_grid") == ["model=cnn,mlp", "optimizer.lr=1e-3,3e-3,1e-2"]
    custom = tmp_path / "mine.yaml"
    custom.write_text("params:\n  seed: 1,2\n  model: mlp\n")
    assert [job.overrides for job in plan(["model=cnn"], sweep_file=str(custom))] == [
        ["seed=1", "model=cnn"], ["seed=2", "model=cnn"]]
    with pytest.raises(SweepDefinitionError, match=r"not found; give a path or one of \['lr_grid'"):
        read_sweep_file("nope")


def test_sweep_file_without_params_says_what_it_needs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: cnn,mlp\n")
    with pytest.raises(SweepDefinitionError, match=r"bad.yaml needs a mapping `params:`"):
        read_sweep_file(str(bad))


def test_merge_replaces_same_keys_only():
    assert merge_overrides(["a=1,2", "b=3"], ["b=4", "c=5"]) == ["a=1,2", "b=4", "c=5"]


def test_same_sweep_same_id_whatever_the_order():
    jobs = plan(["model=cnn,mlp"])
    assert sweep_id("a/train.ipynb", jobs) == sweep_id("b/train.ipynb", jobs[::-1])
    assert sweep_id("train.ipynb", jobs) != sweep_id("train.ipynb", plan(["model=mlp,resnet18"]))


def test_jobs_are_named_and_file_safe():
    job = plan(['+note="a/b c"'])[0]
    assert job.name == 'note="a/b c"' and short_name(job) == "note=_a_b_c_"


def test_targets_are_checked_for_every_job_with_the_notebooks_folder_importable(tmp_path):
    import shutil

    shutil.copy(ROOT / "notebooks" / "train.ipynb", tmp_path / "train.ipynb")
    (tmp_path / "mine.py").write_text("class Net:\n    def __init__(self, input_shape, "
                                      "num_classes, width=4):\n        pass\n")
    mine = inspect(tmp_path / "train.ipynb")
    [job] = planning.plan(mine, ["model._target_=mine.Net", "~model.channels", "+model.width=8"])
    assert job.overrides == ["model._target_=mine.Net", "~model.channels=null", "+model.width=8"]
    with pytest.raises(SweepDefinitionError, match=r"model.wdth: mine.Net has no parameter "
                                                   r"'wdth'; valid: input_shape, num_classes, "
                                                   r"width"):
        planning.plan(mine, ["model._target_=mine.Net", "~model.channels", "+model.wdth=8"])
    import sys
    assert str(tmp_path) not in sys.path  # the notebook's folder was only borrowed


def test_jobs_are_validated_against_the_notebooks_own_config(tmp_path):
    from sweepbook.notebook import Notebook

    elsewhere = Notebook(tmp_path / "nb.ipynb", "nope")
    with pytest.raises(SweepDefinitionError, match=r"no primary config 'nope'"):
        planning.plan(elsewhere, ["seed=1"])


def _one_by_one(combinations, notebook):
    """What validation did before: compose() for every job (the reference)."""
    outcomes = []
    for overrides in combinations:
        try:
            cfg = notebook.compose(overrides)
        except ConfigError as error:
            outcomes.append(("error", str(error)))
        else:
            outcomes.append((config_hash(cfg), OmegaConf.to_yaml(cfg),
                             config_params(cfg), composition(cfg)))
    return outcomes


def test_composing_each_set_of_group_choices_once_gives_what_compose_gives(monkeypatch):
    """Bases shared by group choices, values applied after: configs, params, record and
    every error message exactly as composing each job; only a job Hydra refuses is composed
    the slow way."""
    monkeypatch.setenv("SWEEPBOOK_OVERRIDES", "training.epochs=2")
    combinations = expand([
        "model=cnn,mlp", "optimizer=adam,sgd", "optimizer.lr=1e-3,-1,abc", "+note=hello",
        "data.val_fraction=0.1,0.95", "~data.test_fraction",
        "paths.output_dir=${paths.root_dir}/x"])
    combinations += [["experiment=digits_mlp", "seed=3"], ["model=nope"], ["~training"],
                     ["model.hidden=4", "model=mlp"], ["training.device=mps"]]
    composer = planning._Composer(TRAIN)
    slow, compose = [], Notebook.compose
    monkeypatch.setattr(Notebook, "compose", lambda self, overrides, *rest: slow.append(
        overrides) or compose(self, overrides, *rest))
    fast = []
    for overrides in combinations:
        try:
            cfg = composer.compose(overrides)
        except ConfigError as error:
            fast.append(("error", str(error)))
        else:
            fast.append((config_hash(cfg), OmegaConf.to_yaml(cfg), config_params(cfg),
                         composition(cfg)))
    monkeypatch.undo()
    monkeypatch.setenv("SWEEPBOOK_OVERRIDES", "training.epochs=2")
    assert fast == _one_by_one(combinations, TRAIN)
    assert {outcome[0] == "error" for outcome in fast} == {True, False}
    assert slow == [["model=nope"], ["~training"]]  # Hydra refuses: no model nope, no training
    assert len(composer.bases) == 8


def test_too_many_jobs_are_refused_before_validation_unless_the_limit_is_raised():
    with pytest.raises(SweepDefinitionError, match=r"100,000 jobs.*10,000.*--max-jobs 100000"):
        planning.check_size(100_000)
    planning.check_size(100_000, max_jobs=100_000)


def test_sweep_file_that_is_not_yaml_names_the_file_and_line(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("params:\n  model: cnn\n   seed: [0\n")
    with pytest.raises(SweepDefinitionError, match=r"(?s)broken.yaml is not valid YAML.*line 3"):
        read_sweep_file(str(broken))
    listed = tmp_path / "listed.yaml"
    listed.write_text("- model\n")
    with pytest.raises(SweepDefinitionError, match="needs a mapping `params:`"):
        read_sweep_file(str(listed))


def test_a_huge_grid_is_counted_and_refused_without_being_made():
    """25 million combinations: counted from the sweeps' lengths, refused at once."""
    with pytest.raises(SweepDefinitionError, match=r"25,000,000 jobs.*limit of 10,000"):
        planning.combinations(["seed=range(0,5000)", "training.epochs=range(1,5001)"],
                              max_jobs=10_000)
    with pytest.raises(SweepDefinitionError, match=r"more than 1,000 jobs.*limit of 10"):
        planning.combinations(["seed=range(0,100000)"], max_jobs=10)
    assert len(planning.combinations(["seed=1,2", "model=cnn,mlp"], max_jobs=4)) == 4
