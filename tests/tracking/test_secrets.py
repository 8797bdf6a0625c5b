"""Secret overrides: redacted where they enter a job, their real values only in a 0600 file."""
import os
import stat

import pytest

from sweepbook.tracking import secrets
from sweepbook.config import SECRETS_ENV, ConfigError, compose, composition
from sweepbook.params import REDACTED, config_params, redact_override, redacted_yaml
from sweepbook.redaction import hide_secrets_in
from sweepbook.sweep.plan import SweepDefinitionError, expand
from sweepbook.tracking.record import config_hash

REAL = ["+db.password=hunter2xyz", "+db.url=postgresql://u:pw123@host/db",
        "+vault={token:tok987,user:me}", "model=mlp"]
SHOWN = ["+db.password=***", "+db.url=postgresql://u:***@host/db",
         "+vault={token:***,user:me}", "model=mlp"]
PLANTED = ("hunter2xyz", "pw123", "tok987")


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("override, shown", [
    ("+db.password=x", "+db.password=***"),
    ("++db.token=abc", "++db.token=***"),
    ("~db.password=x", "~db.password=***"),
    ("~db.password", "~db.password"),
    ("db.auth_token=q", "db.auth_token=***"),
    ("+db={password:hunter2,user:me}", "+db={password:***,user:me}"),
    ("+db={password:'a b',nested:{api_key:k}}", "+db={password:***,nested:{api_key:***}}"),
    ("+hosts=[a,postgresql://u:p@h/db]", "+hosts=[a,postgresql://u:***@h/db]"),
    ("tracking.uri=postgresql://u:pw123@host/db", "tracking.uri=postgresql://u:***@host/db"),
    ("tracking.uri='postgresql://u:pw123@host/db'", "tracking.uri=postgresql://u:***@host/db"),
    ("+db.password=a,b", "+db.password=***"),  # a sweep of secrets: hidden whole
    ("+db.url=postgresql://u:a@h/db,postgresql://u:b@h/db",
     "+db.url=postgresql://u:***@h/db,postgresql://u:***@h/db"),
])
def test_secret_values_are_hidden_inside_any_override(override, shown):
    assert redact_override(override) == shown


@pytest.mark.parametrize("override", [
    "num_passes=3", "+max_tokens=5", "+tokenizer=bpe", "+author=me", "model=cnn,mlp",
    "optimizer.lr=1e-3,1e-2", "seed=range(0,3)", "tracking.uri=sqlite:////tmp/mlflow.db",
    "+x=${oc.env:HOME}", "+db={user:me, host:'a b'}",
])
def test_overrides_without_secrets_are_left_exactly_as_written(override):
    assert redact_override(override) == override


def test_split_gives_redacted_overrides_and_the_real_ones_behind_them():
    shown, secret = secrets.split(REAL)
    assert shown == SHOWN
    assert secret == dict(zip(SHOWN[:3], REAL[:3]))
    assert secrets.split(["model=mlp", "num_passes=2"]) == (["model=mlp", "num_passes=2"], {})


def test_compose_puts_the_real_values_back_from_the_secrets_file(tmp_path, monkeypatch):
    path = secrets.write(tmp_path / "secrets.json", secrets.split(REAL)[1])
    assert mode(path) == 0o600
    monkeypatch.setenv(SECRETS_ENV, str(path))
    cfg = compose(SHOWN)
    assert cfg.db.password == "hunter2xyz" and cfg.vault.token == "tok987"
    assert cfg.db.url == "postgresql://u:pw123@host/db"
    assert composition(cfg).overrides == tuple(SHOWN)  # what a run records: redacted
    monkeypatch.delenv(SECRETS_ENV)
    real = compose(REAL)
    assert config_hash(cfg) == config_hash(real) and config_params(cfg) == config_params(real)
    assert config_params(cfg)["db.password"] == REDACTED


def test_an_unreadable_secrets_file_is_a_config_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv(SECRETS_ENV, str(tmp_path / "gone.json"))
    with pytest.raises(ConfigError, match="gone.json"):
        compose(SHOWN)


def test_one_job_gets_its_secrets_in_a_private_file_removed_after(monkeypatch):
    monkeypatch.setenv(SECRETS_ENV, "/stale/secrets.json")
    with secrets.passed(REAL) as shown:
        path = os.environ[SECRETS_ENV]
        assert shown == SHOWN and mode(path) == 0o600
        assert compose(shown).db.password == "hunter2xyz"
    assert not os.path.exists(path) and os.environ[SECRETS_ENV] == "/stale/secrets.json"
    with secrets.passed(["model=mlp"]) as shown:
        assert shown == ["model=mlp"] and SECRETS_ENV not in os.environ


def test_a_sweep_cannot_give_a_secret_several_values():
    with pytest.raises(ConfigError) as raised:
        secrets.secret_overrides([["+db.password=first1", "seed=0"],
                                  ["+db.password=second2", "seed=1"]])
    assert "+db.password" in str(raised.value)
    assert "first1" not in str(raised.value) and "second2" not in str(raised.value)


def test_a_sweep_definition_is_recorded_redacted_and_restored_for_resume(tmp_path):
    definition = {"notebook": "train.ipynb", "config_name": "train",
                  "overrides": [*REAL, "seed=0,1"],
                  "jobs": [{"index": i, "overrides": [*REAL, f"seed={i}"], "config_hash": "h"}
                           for i in (0, 1)]}
    recorded, path = secrets.hide_in_definition(definition, f"sqlite:///{tmp_path}/mlflow.db",
                                                "1a2b")
    assert path == tmp_path / "mlflow.db.sweepbook" / "secrets" / "sweep-1a2b.json"
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert recorded["overrides"] == [*SHOWN, "seed=0,1"]
    assert recorded["jobs"][1]["overrides"] == [*SHOWN, "seed=1"]
    assert not any(secret in str(recorded) for secret in PLANTED)
    assert secrets.restore_definition(recorded)["jobs"] == definition["jobs"]
    secrets.forget(path)  # the sweep ended with every job finished
    assert not path.exists()
    with pytest.raises(ConfigError, match="run the sweep again"):
        secrets.restore_definition(recorded)


def test_a_symlink_planted_where_the_secrets_go_is_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere.json"
    (tmp_path / "secrets.json").symlink_to(elsewhere)
    with pytest.raises(OSError):
        secrets.write(tmp_path / "secrets.json", {"+db.password=***": "+db.password=hunter2"})
    assert not elsewhere.exists()


def test_a_sweep_on_a_server_keeps_its_secrets_in_the_users_state_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    definition = {"overrides": [REAL[0]], "jobs": [{"overrides": [REAL[0]]}]}
    _, path = secrets.hide_in_definition(definition, "http://ml:pw@server:5000", "1a2b")
    assert path == tmp_path / "state" / "sweepbook" / "secrets" / "sweep-1a2b.json"
    assert mode(path) == 0o600 and mode(path.parent) == 0o700


def test_a_definition_without_secrets_is_recorded_as_it_was(tmp_path):
    definition = {"overrides": ["seed=0,1"], "jobs": [{"overrides": ["seed=0"]}]}
    assert secrets.hide_in_definition(definition, f"sqlite:///{tmp_path}/mlflow.db",
                                      "1a2b") == (definition, None)
    assert list(tmp_path.iterdir()) == []


def test_the_printed_config_hides_secrets():
    text = redacted_yaml(compose(REAL))
    assert "password: '***'" in text and "postgresql://u:***@host/db" in text
    assert not any(secret in text for secret in PLANTED)


@pytest.mark.parametrize("overrides", [
    ["db.password=hunter2"],  # Hydra: "To append to your config use +db.password=hunter2"
    ["+db.password=[hunter2"],  # a parse error quoting the override
    ["+db.password='hunter2"],  # the lexer's error, with a caret under it
    ["db={password:hunter2}"],
    ["+db={password:hunter2,x:[1"],  # a dict Hydra cannot parse
    ["seed=postgresql://u:hunter2@h/db"],  # the value quoted by the type check
])
def test_config_errors_do_not_show_secret_values(overrides):
    with pytest.raises(ConfigError) as raised:
        compose(overrides, check_targets=False)
    assert "hunter2" not in str(raised.value) and REDACTED in str(raised.value)


def test_config_errors_do_not_show_the_secrets_a_job_received(tmp_path, monkeypatch):
    path = secrets.write(tmp_path / "secrets.json", {"db.password=***": "db.password=hunter2"})
    monkeypatch.setenv(SECRETS_ENV, str(path))
    with pytest.raises(ConfigError, match=r"use \+db\.password=\*\*\*") as raised:
        compose(["db.password=***"], check_targets=False)
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize("overrides", [
    ["+db.password=[hunter2"], ["+db.password='hunter2", "seed=0,1"],
    ["+db={password:hunter2,x:[1"],
])
def test_a_sweep_that_cannot_be_expanded_does_not_show_its_secrets(overrides):
    with pytest.raises(SweepDefinitionError) as raised:
        expand(overrides)
    assert "hunter2" not in str(raised.value) and "cannot expand the sweep" in str(raised.value)


def test_hide_secrets_in_leaves_text_without_secrets_as_it_was():
    text = "Could not override 'seed'. To append to your config use +seed=abc"
    assert hide_secrets_in(text, ["seed=abc", "model=mlp", "+db.password=***"]) == text
