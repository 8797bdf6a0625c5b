"""A search space as the user writes it (Hydra's sweep grammar) and the Optuna distributions it
becomes; the corners validated before any trial; search files; the study's name."""
import warnings

import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from sweepbook.sweep.plan import SweepDefinitionError
from sweepbook.sweep.space import SearchSettings, parse, read_search_file, settle
from sweepbook.sweep.study import study_name

from conftest import ROOT

TRAIN = str(ROOT / "notebooks" / "train.ipynb")
SMALL = ROOT / "conf" / "search" / "train_small.yaml"


@pytest.mark.parametrize("written, distribution", [
    ("interval(1e-4,1e-1)", FloatDistribution(1e-4, 1e-1)),
    ("interval(8,64)", IntDistribution(8, 64)),  # integer bounds: an integer interval
    ("interval(-5,5)", IntDistribution(-5, 5)),
    ("interval(1,10.0)", FloatDistribution(1.0, 10.0)),  # one float bound: a float one
    ("tag(log,interval(1e-4,1e-1))", FloatDistribution(1e-4, 1e-1, log=True)),
    ("tag(log,interval(8,64))", IntDistribution(8, 64, log=True)),
    ("choice(32,64,128)", CategoricalDistribution([32, 64, 128])),
    ("32,64,128", CategoricalDistribution([32, 64, 128])),
    ("choice(cnn,mlp)", CategoricalDistribution(["cnn", "mlp"])),
    ("choice(true,false)", CategoricalDistribution([True, False])),
    ("range(8,33,8)", IntDistribution(8, 32, step=8)),  # Hydra's range: the stop excluded
    ("range(1,4)", IntDistribution(1, 3)),
    ("range(1,2,0.25)", FloatDistribution(1.0, 1.75, step=0.25)),
])
def test_each_form_of_the_grammar_becomes_its_distribution(written, distribution):
    assert parse([f"key={written}"]).distributions == {"key": distribution}


def test_a_float_range_keeps_its_points():
    """range(0.1,0.5,0.1) is 0.1, 0.2, 0.3 and 0.4, whatever binary floats make of 0.1 * 3."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna warns when a step does not divide the range
        space = parse(["x=range(0.1,0.5,0.1)"])
    [distribution] = space.distributions.values()
    assert (distribution.low, distribution.step) == (0.1, 0.1)
    assert distribution.high == pytest.approx(0.4)
    assert space.grid()["x"] == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_fixed_overrides_are_kept_for_every_trial_and_sampled_values_follow():
    space = parse(["training.epochs=5", "model=choice(cnn,mlp)", "+extra=a",
                   "optimizer.lr=tag(log,interval(1e-4,1e-1))"])
    assert space.fixed == ["training.epochs=5", "+extra=a"]
    assert set(space.distributions) == {"model", "optimizer.lr"}
    assert space.written == {"model": "choice(cnn,mlp)",
                             "optimizer.lr": "tag(log,interval(1e-4,1e-1))"}
    assert space.overrides({"model": "mlp", "optimizer.lr": 0.00123}) == [
        "training.epochs=5", "+extra=a", "model=mlp", "optimizer.lr=0.00123"]


def test_sampled_values_are_written_back_as_overrides_hydra_reads_the_same():
    space = parse(["flag=choice(true,false)", "name=choice('a b',c)"])
    assert space.overrides({"flag": False, "name": "a b"}) == ["flag=false", "name='a b'"]


def test_a_key_given_fixed_and_searched_is_searched():
    space = parse(["model=cnn", "model=choice(cnn,mlp)"])
    assert space.fixed == [] and list(space.distributions) == ["model"]


def test_corners_try_every_choice_and_both_bounds_one_key_at_a_time():
    space = parse(["training.epochs=2", "optimizer.lr=interval(1e-4,1e-1)",
                   "model=choice(cnn,mlp)", "training.batch_size=range(8,33,8)"])
    corners = space.corners()
    assert all(corner[0] == "training.epochs=2" for corner in corners)
    seen = {override for corner in corners for override in corner}
    assert {"optimizer.lr=0.0001", "optimizer.lr=0.1", "model=cnn", "model=mlp",
            "training.batch_size=8", "training.batch_size=32"} <= seen
    # one key away from the first corner each: 1 + (2 - 1) + (2 - 1) + (2 - 1)
    assert len(corners) == 4
    first = corners[0]
    for corner in corners[1:]:
        assert sum(a != b for a, b in zip(first, corner)) == 1, corner


def test_grid_lists_every_value_and_refuses_an_interval():
    assert parse(["a=range(8,33,8)", "b=choice(x,y)"]).grid() == {"a": [8, 16, 24, 32],
                                                                   "b": ["x", "y"]}
    assert parse(["a=range(8,33,8)", "b=choice(x,y)"]).grid_size() == 8
    with pytest.raises(SweepDefinitionError) as refused:
        parse(["optimizer.lr=interval(1e-4,1e-1)", "b=choice(x,y)"]).grid()
    message = str(refused.value)
    assert "optimizer.lr=interval(1e-4,1e-1)" in message and "choice() or range()" in message
    assert "b=" not in message  # only the interval is named


@pytest.mark.parametrize("search, says", [
    ("optimizer.lr=interval(1e-1)", "cannot parse the search"),
    ("optimizer.lr=interval(1e-1,1e-4)", "low <= high"),
    ("optimizer.lr=tag(log,interval(0,1e-1))", "low > 0"),
    ("model=range(1,1)", "it has no values"),
    ("optimizer.lr=choice(0.1,0.1)", "a value appears twice"),
    ("+db.password=choice(a,b)", "a secret cannot be searched over"),
    ("optimizer.lr=0.01", "nothing to search over"),
])
def test_a_bad_search_is_refused_naming_it(search, says):
    with pytest.raises(SweepDefinitionError) as refused:
        parse([search])
    assert says in str(refused.value)
    if "password" not in search:
        assert search.split("=")[0] in str(refused.value)


def test_a_search_file_is_read_typed():
    settings = read_search_file("train_small")
    written = yaml.safe_load(SMALL.read_text())
    assert settings.params == {k: str(v) for k, v in written["params"].items()}
    assert (settings.trials, settings.metric, settings.direction, settings.sampler,
            settings.pruner, settings.seed) == tuple(
        written[k] for k in ("trials", "metric", "direction", "sampler", "pruner", "seed"))
    assert read_search_file(str(SMALL)) == settings  # a path works too


def test_the_command_line_wins_over_the_search_file():
    written = yaml.safe_load(SMALL.read_text())
    settings, overrides = settle(SearchSettings(trials=3, sampler="random"),
                                 ["model=mlp", "training.epochs=2"], "train_small")
    assert (settings.trials, settings.sampler) == (3, "random")
    assert (settings.metric, settings.pruner, settings.seed) == (
        written["metric"], written["pruner"], written["seed"])
    space = parse(overrides)
    assert "model=mlp" in space.fixed and "training.epochs=2" in space.fixed
    assert "model" not in space.distributions  # the command line fixed it
    assert not any(o.startswith("training.epochs=") and o != "training.epochs=2"
                   for o in overrides)
    assert "optimizer.lr" in space.distributions  # the file's other searches stay


def test_a_search_file_with_a_bad_setting_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("params:\n  model: choice(cnn,mlp)\nsampler: nope\n")
    with pytest.raises(SweepDefinitionError, match="sampler='nope': valid are tpe"):
        settle(SearchSettings(), [], str(path))
    path.write_text("params:\n  model: choice(cnn,mlp)\ntrials: many\n")
    with pytest.raises(SweepDefinitionError, match="bad.yaml"):
        read_search_file(str(path))


def test_the_study_name_is_stable_for_the_same_search_and_differs_for_another():
    search = ["optimizer.lr=tag(log,interval(1e-4,1e-1))", "model=choice(cnn,mlp)"]
    name = study_name(TRAIN, search)
    assert name.startswith("train-")
    assert study_name(TRAIN, search) == name
    assert study_name(TRAIN, list(reversed(search))) == name  # order is not a new search
    assert study_name(TRAIN, search + ["training.epochs=3"]) != name
    assert study_name(TRAIN, search[:1]) != name
    assert study_name(str(ROOT / "notebooks" / "regress.ipynb"), search) != name
