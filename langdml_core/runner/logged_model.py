"""A trial's final embedding network in its MLflow run, in a form MLflow loads back.

Logged with MLflow's PyTorch flavour (``mlflow.pytorch.log_model``: the whole module, pickled) under the
name ``model``, with a signature (images (-1, 3, S, S) float32 -> embeddings (-1, D)) and, as metadata, the
evaluation transform it expects (size, resize, mean, std, interpolation). Loading needs langdml installed
(the module's classes live here) and the sweep's tracking URI (a ``models:/`` URI is looked up there):

    model, transform = load_embedding_model(run.data.tags["langdml.model_uri"], "sqlite:///results/local/mlflow.db")
    embedding = model(transform(PIL.Image.open(path).convert("RGB"))[None])   # (1, D), L2-normalised

``LANGDML_LOG_MODEL=0`` turns it off (a ResNet-50 is ~95 MB per trial).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from langdml_core.runner.records import MODEL_URI_TAG

log = logging.getLogger(__name__)

MODEL_NAME = "model"


def enabled() -> bool:
    return os.environ.get("LANGDML_LOG_MODEL", "1") != "0"


def embedding_model(config, state_dict: dict[str, Any]):
    """The trial's embedding network with its final weights, in eval mode, on the CPU (no pretrained weights
    are read: the state dict has them all)."""
    from dataclasses import replace

    from langdml_core.backbones import build_model

    model = build_model(replace(config.model, pretrained=False, weights_file=""))
    model.load_state_dict(state_dict)
    return model.eval()


def transform_metadata(config, model, default_image_size: int) -> dict[str, Any]:
    """What ``embedding_transform`` needs to prepare an image as the trial's evaluation did."""
    norm = model.data_config
    return {
        "image_size": config.data.image_size or default_image_size,
        "resize": config.data.resize,
        "mean": list(norm["mean"]),
        "std": list(norm["std"]),
        "interpolation": norm["interpolation"],
        "embed_dim": config.model.embed_dim,
    }


def embedding_transform(metadata: dict[str, Any]):
    """The evaluation transform of the logged model's trial (resize, centre crop, tensor, normalise)."""
    from langdml_core.data.transforms import eval_transform

    return eval_transform(
        int(metadata["image_size"]),
        tuple(metadata["mean"]),
        tuple(metadata["std"]),
        metadata["interpolation"],
        int(metadata["resize"]),
    )


def load_embedding_model(model_uri: str, tracking_uri: str):
    """(network in eval mode, its evaluation transform) of a logged model, from the MLflow at
    ``tracking_uri``."""
    import mlflow

    from langdml_core.runner.tracking_store import mlflow_tracking_uri

    with mlflow_tracking_uri(tracking_uri):
        model = mlflow.pytorch.load_model(model_uri, map_location="cpu").eval()
        return model, embedding_transform(mlflow.models.get_model_info(model_uri).metadata)


def log_embedding_model(run, config, state_dict: dict[str, Any], default_image_size: int) -> str | None:
    """Log the network to the trial's run; its model URI (also tagged on the run), or None when turned off or
    MLflow could not take it (a warning says why: the trial's results do not depend on it)."""
    if not enabled() or run.run_id is None:
        return None
    import mlflow
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    model = embedding_model(config, state_dict)
    metadata = transform_metadata(config, model, default_image_size)
    size = metadata["image_size"]
    example = np.zeros((1, 3, size, size), dtype=np.float32)
    with torch.no_grad():
        signature = infer_signature(example, model(torch.from_numpy(example)).numpy())
    from langdml_core.runner.tracking_store import mlflow_tracking_uri

    try:
        with mlflow_tracking_uri(run.uri):
            # Created here in the trial's experiment: left to itself, log_model files the model under the
            # process's default experiment ("0"), its artifacts in ./mlruns of whatever directory this runs in.
            logged = mlflow.initialize_logged_model(
                name=MODEL_NAME,
                source_run_id=run.run_id,
                experiment_id=run.experiment_id,
                params={key: str(value) for key, value in config.flat().items()},
            )
            info = mlflow.pytorch.log_model(
                model,
                name=MODEL_NAME,
                run_id=run.run_id,
                model_id=logged.model_id,
                signature=signature,
                metadata=metadata,
                serialization_format="pickle",  # pt2 (torch.export) would fix the batch size of its example
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "timm", "langdml"],
            )
    except Exception as exc:  # a lost server, a full artifact store: the trial's results stand without it
        log.warning("The trial's model was not logged to MLflow: %s", str(exc).splitlines()[0][:300])
        return None
    run.set_tags({MODEL_URI_TAG: info.model_uri})
    return info.model_uri
