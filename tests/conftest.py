"""Shared test set-up: offline, one torch thread per xdist worker, a project-local cache, and the device and
dtype the tensor tests run in.

``LANGDML_TEST_DEVICE`` (default ``cpu``; e.g. ``cuda``, ``cuda:1``) and ``LANGDML_TEST_DTYPE`` (default
``float64``; or ``float32``) point the same suite at another device or precision: tests take them from the
``device`` and ``dtype`` fixtures (or :data:`TEST_DEVICE` / :data:`TEST_DTYPE`), tolerances that depend on
the precision from :func:`tolerance`. A test that compares against a numerical gradient or a float64
reference keeps float64 and takes only the device (it says so where it does).
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The tests' own cache, always: a user's exported LANGDML_CACHE must never receive the tests' random models
# (or serve the tests its own tables).
os.environ["LANGDML_CACHE"] = str(ROOT / ".pytest_cache" / "langdml-cache")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# torch.compile's C++ headers and kernels (hundreds of MB) go to a per-run folder that is removed at exit,
# not to /tmp/torchinductor_$USER, where they would stay on a CI machine's disk.
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="langdml-inductor-")
    atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)

import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _no_tracking_uri_from_outside(monkeypatch):
    """Each test starts without MLFLOW_TRACKING_URI (a user's server, or one an earlier test's MLflow call
    exported into this process), so the sweeps it starts log where the test says."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # two workers on two cores: more threads only contend

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _test_device() -> torch.device:
    name = os.environ.get("LANGDML_TEST_DEVICE", "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise pytest.UsageError(f"LANGDML_TEST_DEVICE={name!r} is not a torch device: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"LANGDML_TEST_DEVICE={name!r} but torch sees no CUDA device")
    return device


def _test_dtype() -> torch.dtype:
    name = os.environ.get("LANGDML_TEST_DTYPE", "float64")
    if name not in DTYPES:
        raise pytest.UsageError(f"LANGDML_TEST_DTYPE={name!r} must be one of {sorted(DTYPES)}")
    return DTYPES[name]


TEST_DEVICE = _test_device()
TEST_DTYPE = _test_dtype()


def pytest_report_header(config) -> str:
    return f"langdml tensors: device {TEST_DEVICE}, dtype {TEST_DTYPE} (LANGDML_TEST_DEVICE / LANGDML_TEST_DTYPE)"


@pytest.fixture
def device() -> torch.device:
    """The device tensor tests run on (``LANGDML_TEST_DEVICE``, default cpu)."""
    return TEST_DEVICE


@pytest.fixture
def dtype() -> torch.dtype:
    """The floating dtype tensor tests use where precision is not the point (``LANGDML_TEST_DTYPE``,
    default float64)."""
    return TEST_DTYPE


def tolerance(dtype: torch.dtype, float64: float, float32: float) -> float:
    """The tolerance of a comparison in ``dtype``: ``float64`` for float64 tensors, else ``float32``."""
    return float64 if dtype == torch.float64 else float32


@pytest.fixture(scope="session")
def demo_dataset():
    from langdml_core.config import DataConfig
    from langdml_core.data import build_dataset

    return build_dataset(DataConfig(name="demo"))


def tiny_trial(tmp_path, **overrides):
    """A config dict for a seconds-long CPU trial on the demo data."""
    config = {
        "data.name": "demo",
        "model.backbone": "test_efficientnet",  # timm's tiny test model: seconds, not minutes
        "model.pretrained": False,
        "model.embed_dim": 32,
        "optim.batch_size": 32,
        "optim.lr": 1e-4,
        "run.epochs": 2,
        "run.max_steps_per_epoch": 3,
        "run.progress": False,
        "run.out_dir": str(tmp_path / "run"),
        "eval.batch_size": 256,
        "data.test_images_per_class": 24,  # the demo has 96: the first 24 keep a test's evaluation at ~1 s
    }
    config.update(overrides)
    return config
