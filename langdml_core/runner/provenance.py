"""What a run was made with: the code's commit (read on the driver) and the versions of the packages that
shape a result, as MLflow tags."""

from __future__ import annotations

from pathlib import Path

SOURCE_PREFIX = "mlflow.source."
GIT_COMMIT_TAG = "mlflow.source.git.commit"
PROVENANCE_PREFIX = "provenance."
PACKAGES = (
    "langdml",
    "torch",
    "torchvision",
    "timm",
    "pytorch-metric-learning",
    "ray",
    "mlflow",
    "faiss-cpu",
    "faiss-gpu",
)


def git_provenance(where: Path | None = None) -> dict[str, str]:
    """Tags naming the code a sweep ran, read on the driver (workers may have no .git): the commit (MLflow's
    own tag, shown in its UI) and whether the working tree had uncommitted changes. Empty outside git."""
    import subprocess

    folder = str(where or Path(__file__).resolve().parents[2])
    try:
        commit = subprocess.run(
            ["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", folder, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {GIT_COMMIT_TAG: commit, f"{PROVENANCE_PREFIX}git_dirty": str(bool(dirty)).lower()}


def source_tags(sweep_path: Path | str) -> dict[str, str]:
    """MLflow's own source tags (the UI's Source column): the sweep file, relative to the repository when it
    lies inside it, run locally (by the driver; Ray runs the trials)."""
    path = Path(sweep_path).resolve()
    root = Path(__file__).resolve().parents[2]
    name = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    return {f"{SOURCE_PREFIX}name": name, f"{SOURCE_PREFIX}type": "LOCAL"}


def package_versions() -> dict[str, str]:
    """Tags with the versions of the packages that shape a result, as installed where this runs."""
    from importlib import metadata

    found = {}
    for name in PACKAGES:
        try:
            found[f"{PROVENANCE_PREFIX}{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found
