"""What a trial reserves on a Ray cluster: its CPU share (checked against the nodes), its GPU share (one per
trial by default where the cluster has GPUs), and the device it then runs on."""

from __future__ import annotations

import sys

from langdml_core.errors import ConfigError


def check_trial_cpus(cpus: float, local: bool, nodes: list[dict] | None = None) -> None:
    """A trial reserves ``cpus`` on one node. On the embedded local Ray (a fixed machine) a share no node has
    would leave every trial PENDING for ever: refuse it in one sentence. On a cluster the autoscaler may add
    such a node later, so it is only a warning there."""
    if not cpus > 0:
        raise ConfigError(
            f"--cpus-per-trial {cpus:g} must be > 0 (each trial needs at least a share of a CPU)."
        )
    if nodes is None:
        import ray

        nodes = [node for node in ray.nodes() if node.get("Alive")]
    largest = max((float(node.get("Resources", {}).get("CPU", 0)) for node in nodes), default=0.0)
    if cpus <= largest:
        return
    where = "this machine's local Ray" if local else "any node of the cluster now"
    message = f"--cpus-per-trial {cpus:g} is more than {where} has ({largest:g} CPUs)"
    if local:
        raise ConfigError(f"{message}; no trial could ever start: pass --cpus-per-trial {largest:g} or less.")
    print(f"warning: {message}; trials wait until the autoscaler adds a larger node.", file=sys.stderr)


def gpus_per_trial(requested: float | None, trials, cluster_gpus: float | None = None) -> float:
    """The GPU share each trial reserves (Ray started): ``requested``, or by default 1 when the cluster has
    GPUs and 0 when it has none. A trial that reserved none runs on the CPU (the trainable sees to it), so a
    sweep that asks for CUDA (``run.device=cuda...``) without a reservation is refused here, in one sentence."""
    if cluster_gpus is None:
        import ray

        cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
    gpus = requested if requested is not None else (1.0 if cluster_gpus > 0 else 0.0)
    if requested is None and gpus:
        print(
            f"Reserving 1 GPU per trial ({cluster_gpus:g} in the cluster; --gpus-per-trial sets another share)."
        )
    cuda = sorted({t.config.get("run.device", "auto") for t in trials} - {"auto", "cpu"})
    if gpus == 0 and cuda:
        raise ConfigError(
            f"run.device={cuda[0]!r} but --gpus-per-trial is 0 (the cluster has {cluster_gpus:g} GPUs): a trial "
            "would use a GPU no one reserved for it; pass --gpus-per-trial 1 (or 0.5 to share one), or use "
            "run.device=auto."
        )
    return gpus


def trial_device(device: str, reserved_gpu_ids: list) -> str:
    """run.device inside a Tune trial: ``auto`` becomes ``cpu`` when Ray reserved no GPU for the trial (Ray
    does not hide the node's GPUs from such a trial: it would share cuda:0 with every other one)."""
    return "cpu" if device == "auto" and not reserved_gpu_ids else device
