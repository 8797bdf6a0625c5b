from sweepbook.config import compose
from sweepbook.params import REDACTED, config_params, flatten, redact, redact_overrides


def test_flatten_uses_dotted_keys_and_keeps_lists_whole():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}}) == {
        "a.b": 1, "a.c.d": [1, 2], "e": {}}


def test_secret_looking_keys_are_redacted_at_any_depth():
    tree = {"db": {"password": "hunter2", "user": "me"}, "api_key": "k", "GITHUB_TOKEN": "t",
            "credentials": {"x": 1}, "lr": 0.1, "my_secret": "s"}
    assert redact(tree) == {"db": {"password": REDACTED, "user": "me"}, "api_key": REDACTED,
                            "GITHUB_TOKEN": REDACTED, "credentials": REDACTED, "lr": 0.1,
                            "my_secret": REDACTED}


def test_passwords_inside_uris_are_redacted():
    assert redact({"uri": "postgresql://bob:pw@db:5432/mlflow"}) == {
        "uri": f"postgresql://bob:{REDACTED}@db:5432/mlflow"}


def test_config_params_are_flat_strings_with_secrets_hidden():
    params = config_params(compose(["+service.api_key=abc123", "optimizer.lr=0.01"]))
    assert params["optimizer.lr"] == "0.01"
    assert params["model"] == "cnn" and params["model._target_"] == "sweepbook.models.CNN"
    assert "optimizer._partial_" not in params  # how to build, not what
    assert params["service.api_key"] == REDACTED
    assert all(isinstance(v, str) for v in params.values())
    assert "abc123" not in "".join(params.values())


def test_overrides_keep_keys_but_hide_secret_values():
    assert redact_overrides(["model=mlp", "+db.password=x", "~token"]) == [
        "model=mlp", f"+db.password={REDACTED}", "~token"]


def test_ordinary_keys_that_contain_a_secret_word_stay_visible():
    tree = {"tokenizer": "bpe", "max_tokens": 5, "num_passes": 2, "author": "me",
            "db_pass": "x", "auth_token": "y", "oauth.client_secret": "z"}
    assert redact(tree) == {"tokenizer": "bpe", "max_tokens": 5, "num_passes": 2,
                            "author": "me", "db_pass": REDACTED, "auth_token": REDACTED,
                            "oauth.client_secret": REDACTED}
