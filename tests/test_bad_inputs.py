"""Every bad input a user can give is refused before anything is created: exit code 2, a
message naming the value and what would be valid, no store, no run, no output folder.

The table BAD_INPUTS is the inventory: len(BAD_INPUTS) bad inputs tried, all rejected before
any run.
"""
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import pytest
import torch
from mlflow.tracking import MlflowClient

from sweepbook.cli import main
from sweepbook.tracking import record

from conftest import ROOT

TRAIN = str(ROOT / "notebooks" / "train.ipynb")
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def corrupt_store(db: Path) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(bytes(range(256)) * 8)


def deleted_experiment(db: Path) -> None:
    client = MlflowClient(f"sqlite:///{db}")
    client.delete_experiment(client.create_experiment("debug"))


def sweep_without_definition(db: Path) -> None:
    """A sweep's parent run whose sweep.yaml is gone (deleted by hand, a lost artifact)."""
    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.create_experiment("debug", artifact_location=(db.parent / "a").as_uri())
    client.create_run(experiment, tags={record.SWEEP_TAG: "gone", record.ROLE_TAG:
                                        record.PARENT_ROLE})


def empty_store(db: Path) -> None:
    MlflowClient(f"sqlite:///{db}").search_experiments()


def plain_mlflow_run(db: Path) -> str:
    """A run MLflow's own API made, not sweepbook (no primary config tagged); its id."""
    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.create_experiment("debug", artifact_location=(db.parent / "a").as_uri())
    return client.create_run(experiment).info.run_id


def sweepbook_run(**tags: str) -> Callable[[Path], str]:
    """A `store`: a run as start_run tags it, these tags over those, no artifact; its id."""
    def make(db: Path) -> str:
        client = MlflowClient(f"sqlite:///{db}")
        experiment = client.create_experiment("debug",
                                              artifact_location=(db.parent / "a").as_uri())
        made = {record.CONFIG_NAME_TAG: "train", record.SOURCE_NAME_TAG: "notebooks/train.ipynb",
                record.OVERRIDES_TAG: "debug=default", **tags}
        return client.create_run(experiment, tags=made).info.run_id
    return make


def writing(name: str, text: str) -> Callable[[Path], str]:
    """A `make_file`: writes `text` to `name` in the test's folder, gives its path."""
    def make(folder: Path) -> str:
        (folder / name).write_text(text)
        return str(folder / name)
    return make


not_json = writing("broken.ipynb", "this is not json")
broken_yaml = writing("grid.yaml", "params:\n  model: cnn,mlp\n   seed: [0\n")
listed_yaml = writing("grid.yaml", "- model=cnn\n")
# paths.output_dir (`out`, see the test) is a file: no folder can be made in it
a_file_as_output_folder = writing("out", "a file where a folder should be")
unknown_search_key = writing("search.yaml", "params:\n  model: choice(cnn,mlp)\nbogus: 1\n")
bad_search_sampler = writing("search.yaml", "params:\n  model: choice(cnn,mlp)\nsampler: nope\n")
SEARCHED = "model=choice(cnn,mlp)"  # a valid search, for the rows whose fault is elsewhere


@dataclass
class Bad:
    argv: List[str]  # {file} is filled in by `make_file`'s path, {run} by `store`'s run id
    says: List[str]  # all in the message
    store: Optional[Callable[[Path], Optional[str]]] = None  # prepares the store the command
    #                                                          meets (and may make a run)
    make_file: Optional[Callable[[Path], str]] = None
    marks: tuple = ()


BAD_INPUTS = {
    "workers -1 (hung forever)": Bad(["sweep", TRAIN, "seed=0", "--workers", "-1"],
                                     ["--workers", "'-1'", "whole number of 1 or more"]),
    "workers 0": Bad(["sweep", TRAIN, "seed=0", "--workers", "0"], ["--workers", "'0'"]),
    "timeout -5": Bad(["sweep", TRAIN, "seed=0", "--timeout", "-5"],
                      ["--timeout", "'-5'", "seconds above 0"]),
    "timeout 0": Bad(["sweep", TRAIN, "seed=0", "--timeout", "0"], ["--timeout", "'0'"]),
    "max-jobs 0": Bad(["sweep", TRAIN, "seed=0", "--max-jobs", "0"], ["--max-jobs", "'0'"]),
    "100,000 jobs": Bad(["sweep", TRAIN, "seed=range(0,100000)"],
                        ["100,000 jobs", "limit of 10,000", "--max-jobs 100000"]),
    "options between overrides, over the limit": Bad(
        ["sweep", TRAIN, "--sweep-file", "lr_grid", "seed=0,1", "--max-jobs", "5"],
        ["12 jobs", "limit of 5"]),
    "sweep file not YAML": Bad(["sweep", TRAIN, "--sweep-file", "{file}"],
                               ["grid.yaml is not valid YAML", "line 3"], make_file=broken_yaml),
    "sweep file without params": Bad(["sweep", TRAIN, "--sweep-file", "{file}"],
                                     ["grid.yaml needs a mapping `params:`"],
                                     make_file=listed_yaml),
    "run on a store that is not a database": Bad(
        ["run", TRAIN], ["mlflow.db cannot be read as an SQLite database", "move it away"],
        store=corrupt_store),
    "sweep on a store that is not a database": Bad(
        ["sweep", TRAIN, "seed=0,1"], ["mlflow.db cannot be read", "restore it"],
        store=corrupt_store),
    "runs on a store that is not a database": Bad(
        ["runs", "--experiment", "debug"], ["mlflow.db cannot be read"], store=corrupt_store),
    "run of a file that is not a notebook": Bad(
        ["run", "{file}"], ["broken.ipynb is not a valid Jupyter notebook", "not appear to be "
                            "JSON"], make_file=not_json),
    "sweep of a file that is not a notebook": Bad(
        ["sweep", "{file}", "seed=0,1"], ["broken.ipynb is not a valid Jupyter notebook"],
        make_file=not_json),
    "resume of an unknown sweep, no store": Bad(["sweep", "--resume", "nope"],
                                                ["no sweep 'nope'", "no store at"]),
    "resume of an unknown sweep": Bad(["sweep", "--resume", "nope"], ["no sweep 'nope' in"],
                                      store=empty_store),
    "resume of a sweep without its sweep.yaml": Bad(
        ["sweep", "--resume", "gone"], ["sweep 'gone' cannot be resumed", "sweep.yaml",
                                        "run the sweep again"], store=sweep_without_definition),
    "run into a deleted experiment": Bad(
        ["run", TRAIN], ["experiment 'debug'", "is deleted", "mlflow experiments restore"],
        store=deleted_experiment),
    "sweep into a deleted experiment": Bad(
        ["sweep", TRAIN, "seed=0,1"], ["experiment 'debug'", "is deleted"],
        store=deleted_experiment),
    "fractions leaving no training data": Bad(
        ["run", TRAIN, "data.val_fraction=0.6", "data.test_fraction=0.5"],
        ["val_fraction=0.6 + test_fraction=0.5 = 1.1 must be below 1"]),
    "fractions leaving no training data, swept": Bad(
        ["sweep", TRAIN, "data.val_fraction=0.1,0.6", "data.test_fraction=0.5"],
        ["1 of 2 jobs are invalid", "val_fraction=0.6 + test_fraction=0.5"]),
    "cuda without a CUDA device": Bad(
        ["run", TRAIN, "training.device=cuda"],
        ["training.device='cuda'", "no CUDA device is visible", "training.device=auto"],
        marks=(NO_CUDA,)),
    "cuda:1 swept without a CUDA device": Bad(
        ["sweep", TRAIN, "training.device=cpu,cuda:1"], ["training.device='cuda:1'"],
        marks=(NO_CUDA,)),
    "resume with a notebook and overrides": Bad(
        ["sweep", "--resume", "abc", TRAIN, "seed=1"],
        ["--resume abc takes no notebook, overrides or --sweep-file", "MLFLOW_TRACKING_URI"]),
    "a secret swept over several values": Bad(
        ["sweep", TRAIN, "+db.password=first,second"],
        ["+db.password", "different secret values"]),
    "an output folder that cannot be made": Bad(
        ["sweep", TRAIN, "seed=1"], ["paths.output_dir=", "cannot make", "Not a directory"],
        make_file=a_file_as_output_folder),
    "deleting a section sweepbook reads": Bad(
        ["run", TRAIN, "~training"], ["~training", "cannot be deleted", "training.<key>=..."]),
    "tune with an unknown sampler": Bad(["tune", TRAIN, SEARCHED, "--sampler", "nope"],
                                        ["--sampler", "'nope'", "'tpe'", "'grid'"]),
    "tune with an unknown pruner": Bad(["tune", TRAIN, SEARCHED, "--pruner", "nope"],
                                       ["--pruner", "'nope'", "'median'", "'none'"]),
    "tune in an unknown direction": Bad(["tune", TRAIN, SEARCHED, "--direction", "up"],
                                        ["--direction", "'up'", "'max'", "'min'"]),
    "tune of 0 trials": Bad(["tune", TRAIN, SEARCHED, "--trials", "0"],
                            ["--trials", "'0'", "1 or more"]),
    "tune with a negative seed": Bad(["tune", TRAIN, SEARCHED, "--seed", "-1"],
                                     ["--seed", "'-1'", "0 to 2**32-1"]),
    "tune with a study name that is no name": Bad(
        ["tune", TRAIN, SEARCHED, "--study", "my study/1"],
        ["study='my study/1'", "letters, digits"]),
    "tune of an interval with one bound": Bad(
        ["tune", TRAIN, "optimizer.lr=interval(1e-1)"],
        ["optimizer.lr=interval(1e-1)", "missing a required argument", "interval(LOW,HIGH)"]),
    "tune of a reversed interval": Bad(
        ["tune", TRAIN, "optimizer.lr=interval(1e-1,1e-4)"],
        ["optimizer.lr=interval(1e-1,1e-4)", "low <= high", "valid searches"]),
    "tune of a log interval from 0": Bad(
        ["tune", TRAIN, "optimizer.lr=tag(log,interval(0,1e-1))"],
        ["optimizer.lr=tag(log,interval(0,1e-1))", "low > 0", "log"]),
    "tune with nothing to search": Bad(
        ["tune", TRAIN, "optimizer.lr=0.01"],
        ["nothing to search over", "optimizer.lr=0.01", "interval(", "choice("]),
    "tune of a group option that does not exist": Bad(
        ["tune", TRAIN, "model=choice(cnn,nope)"],
        ["model=nope", "Could not find 'model/nope'", "cnn", "mlp"]),
    "tune of an interval reaching out of the schema's range": Bad(
        ["tune", TRAIN, "training.epochs=interval(0,5)"],
        ["training.epochs=0", "must be >= 1"]),
    "tune with a search file that does not exist": Bad(
        ["tune", TRAIN, "--search-file", "nope"], ["search file 'nope' not found",
                                                   "train_small"]),
    "tune with a search file with an unknown key": Bad(
        ["tune", TRAIN, "--search-file", "{file}"],
        ["search.yaml", "bogus", "params", "trials", "sampler"], make_file=unknown_search_key),
    "tune with a search file with an unknown sampler": Bad(
        ["tune", TRAIN, "--search-file", "{file}"], ["sampler='nope'", "tpe", "grid"],
        make_file=bad_search_sampler),
    "tune on a grid with an interval": Bad(
        ["tune", TRAIN, "optimizer.lr=interval(1e-4,1e-1)", SEARCHED, "--sampler", "grid"],
        ["optimizer.lr=interval(1e-4,1e-1)", "grid sampler", "choice() or range()"]),
    "diff of an unknown run, no store": Bad(["diff", "nope", "nada"],
                                            ["no run 'nope'", "no store at"]),
    "diff of an unknown run": Bad(["diff", "nope", "nada"],
                                  ["no run 'nope' in sqlite:///", "sweepbook runs"],
                                  store=empty_store),
    "diff of a run sweepbook did not make": Bad(
        ["diff", "{run}", "{run}"], ["was not made by sweepbook", "sweepbook.config_name"],
        store=plain_mlflow_run),
    "diff of one run": Bad(["diff", "nope"], ["RUN_B"]),
    "rerun of an unknown run, no store": Bad(["rerun", "nope"], ["no run 'nope'", "no store at"]),
    "rerun of an unknown run": Bad(["rerun", "nope"], ["no run 'nope' in sqlite:///",
                                                       "sweepbook runs"], store=empty_store),
    "rerun of a run sweepbook did not make": Bad(
        ["rerun", "{run}", "--check"], ["was not made by sweepbook", "sweepbook.config_name"],
        store=plain_mlflow_run),
    "rerun of a deleted notebook with no logged copy": Bad(
        ["rerun", "{run}"], ["its git commit is unknown", "notebooks/deleted.ipynb no longer "
                             "exists", "no notebook is logged on the run"],
        store=sweepbook_run(**{record.SOURCE_NAME_TAG: "notebooks/deleted.ipynb"})),
    "rerun of a run with a secret it never recorded": Bad(
        ["rerun", "{run}"], ["secret overrides", "+db.password=***", "SWEEPBOOK_SECRETS_FILE"],
        store=sweepbook_run(**{record.OVERRIDES_TAG: "debug=default +db.password=***"})),
    "rerun of nothing": Bad(["rerun"], ["RUN_ID"]),
}


def _runs(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT count(*) FROM runs").fetchone()[0]


def _exit_code(argv: List[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse refuses its own options
        return stop.code


@pytest.mark.parametrize("bad", [pytest.param(bad, id=name, marks=bad.marks)
                                 for name, bad in BAD_INPUTS.items()])
def test_bad_input_is_refused_before_anything_is_created(bad, tmp_path, monkeypatch, capsys):
    db = tmp_path / "store" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    monkeypatch.setenv("SWEEPBOOK_OVERRIDES", f"debug=default paths.output_dir={tmp_path / 'out'}")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    made = None
    if bad.store:
        db.parent.mkdir(parents=True, exist_ok=True)
        made = bad.store(db)
    before = db.read_bytes() if bad.store is corrupt_store else None
    runs = 0 if bad.store in (None, corrupt_store) else _runs(db)
    given = bad.make_file(tmp_path) if bad.make_file else ""
    code = _exit_code([word.replace("{file}", given).replace("{run}", made or "")
                       for word in bad.argv])
    message = capsys.readouterr().err
    assert code == 2, message
    for part in bad.says:
        assert part in message, message
    assert "Traceback" not in message
    if bad.store is None:
        assert not db.parent.exists()
    elif before is not None:
        assert db.read_bytes() == before
    else:
        assert _runs(db) == runs
    assert not (tmp_path / "out").is_dir()
