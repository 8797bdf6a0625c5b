"""Promote a run's model in the MLflow Model Registry: a new version, and an alias on it.

Loading `models:/<name>@<alias>` then always gives the promoted model, whichever version
that is, so notebooks and services never hard-code a run id or a version number.
"""
from dataclasses import dataclass
from typing import Dict, Optional

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import (_validate_model_alias_name,
                                     _validate_model_alias_name_reserved, _validate_model_name)

from sweepbook.tracking.record import MODEL_ARTIFACT
from sweepbook.tracking.store import using_tracking_uri

DEFAULT_ALIAS = "champion"


class RegistryError(ValueError):
    """The run has no model to register, or the registry refused a name."""


@dataclass
class Promotion:
    name: str  # registered model
    version: str  # the new version
    alias: str  # now pointing at that version
    run_id: str  # the run whose model it is

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}"


def _logged_model_id(client: MlflowClient, run) -> str:
    models = client.search_logged_models(
        [run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}' AND name = '{MODEL_ARTIFACT}'")
    if not models:
        raise RegistryError(f"run {run.info.run_id} logged no model named {MODEL_ARTIFACT!r} "
                            "(was it trained with tracking.log_model=false?)")
    return models[0].model_id


def check_names(name: str, alias: str) -> None:
    """The registry's own rules for model names and aliases, checked before anything is
    written, so a bad alias never leaves a version behind without it."""
    try:
        _validate_model_name(name)
        _validate_model_alias_name(alias)
        _validate_model_alias_name_reserved(alias)
    except MlflowException as error:
        raise RegistryError(error.message) from None


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise


def promote(tracking_uri: str, run_id: str, name: str, alias: str = DEFAULT_ALIAS,
            tags: Optional[Dict[str, str]] = None, description: str = "") -> Promotion:
    """Register run `run_id`'s model as a new version of `name` and point `alias` at it."""
    check_names(name, alias)
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    model_id = _logged_model_id(client, client.get_run(run_id))
    _ensure_registered_model(client, name)
    with using_tracking_uri(tracking_uri):  # MLflow finds the logged model through it
        version = client.create_model_version(name, f"models:/{model_id}", run_id=run_id,
                                              tags=tags, description=description,
                                              model_id=model_id)
    client.set_registered_model_alias(name, alias, version.version)
    return Promotion(name, str(version.version), alias, run_id)
