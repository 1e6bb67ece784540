"""Reaching the tracking store: an MLflow client for a URI (a new SQLite database created whole, an http(s)
URI's credentials passed as MLflow's variables), the URI as printed (credentials hidden), and a reachability
check that fails in one sentence before any work starts."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

from langdml_core.errors import DiskFullError, TrackingError


def client(tracking_uri: str):
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # no "View run/experiment at" lines from every trial (a tracking server's URL); the sweep prints one hint
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    if tracking_uri.startswith("sqlite:///"):
        create_sqlite_store(Path(tracking_uri.removeprefix("sqlite:///")))
    plain, user, password = split_credentials(tracking_uri)
    if user is not None:  # MLflow prints run links with the client's URI: the password goes by its variables
        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = user, password or ""
    return mlflow.MlflowClient(tracking_uri=plain)


@contextmanager
def mlflow_tracking_uri(tracking_uri: str):
    """MLflow's global tracking URI set to ``tracking_uri`` (its password, if any, by MLflow's variables) for
    the calls inside that read it (``mlflow.pytorch.log_model``, ``models:/`` URIs), then put back.
    ``mlflow.set_tracking_uri`` also exports MLFLOW_TRACKING_URI, which every later sweep started from this
    process would inherit and log to: the variable gets its previous value back (or none)."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(split_credentials(tracking_uri)[0])
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)  # MLflow's own global unset (it drops the variable too) ...
        if before is not None:
            os.environ["MLFLOW_TRACKING_URI"] = before  # ... and the caller's variable as it was


def create_sqlite_store(path: Path) -> None:
    """Create a new MLflow SQLite database whole or not at all: MLflow migrates it in place on first use, so a
    process killed meanwhile (a driver killed at start) left a half-migrated file that every later run failed
    on ("duplicate column name"). Migrate a temp file under a lock, then rename it into place."""
    if path.exists():
        return
    import mlflow
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.exists():
            return
        tmp = path.with_name(
            f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        )  # MLflow caches stores by URI
        try:
            mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments(max_results=1)
            os.replace(tmp, path)
        except Exception as exc:
            if not _disk_full(path.parent, exc):
                raise
            raise DiskFullError(
                f"The MLflow database {str(path)!r} cannot be created: no space left on its disk; free space "
                "there or pass --results (or --tracking-uri) elsewhere."
            ) from None
        finally:
            tmp.unlink(missing_ok=True)


def _disk_full(folder: Path, exc: Exception, needed: int = 1 << 20) -> bool:
    """Whether ``exc`` came from a full disk: SQLite says "database or disk is full", the OS says ENOSPC, or
    less than ``needed`` bytes are free in ``folder``."""
    if "disk is full" in str(exc) or "No space left" in str(exc):
        return True
    try:
        return shutil.disk_usage(folder).free < needed
    except OSError:
        return False


def redact(uri: str) -> str:
    """A URI with any ``user:password@`` part replaced (printed and logged URIs never carry credentials)."""
    return re.sub(r"//[^/@\s]+@", "//***@", uri)


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """(an http(s) URI without ``user:password@``, user, password); user and password are None when there are
    none. Database URIs (postgresql://user:pw@host/db) keep theirs: SQLAlchemy reads them from the URI."""
    import urllib.parse

    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or parts.username is None:
        return uri, None, None
    plain = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return plain, urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "")


def check_tracking(uri: str) -> None:
    """Fail before any GPU time is spent (and before Ray starts) when the tracking server cannot be reached or
    a new SQLite store cannot be created."""
    if uri.startswith("sqlite:///"):
        create_sqlite_store(Path(uri.removeprefix("sqlite:///")))
        return
    if not uri.startswith(("http://", "https://")):
        return
    import base64
    import urllib.request

    # user:password@ in the URI (as MLflow's client accepts it) becomes a basic-auth header, not a host name
    plain, user, password = split_credentials(uri.rstrip("/"))
    request = urllib.request.Request(plain + "/health")
    if user is not None:
        pair = f"{user}:{password}"
        request.add_header("Authorization", "Basic " + base64.b64encode(pair.encode()).decode())
    try:
        urllib.request.urlopen(request, timeout=10).read()
    except Exception as exc:
        raise TrackingError(
            f"MLflow tracking server {redact(uri)} is unreachable ({exc}); start it or pass --tracking-uri."
        ) from None
