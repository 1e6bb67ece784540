"""Safety: servers bind to 127.0.0.1 unless asked, no credential or environment secret reaches MLflow, the
trial files or the logs, and the AWS cluster opens no port to the internet except SSH."""

from __future__ import annotations

import argparse
import ast
import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_sweeps import ray_temp, run_sweep, stop_ray

from langdml_core.runner.cli import main
from langdml_core.runner.tracking_store import redact

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-test-LANGDML-FAKE-SECRET"
SECRET_ENV = {
    "AWS_SECRET_ACCESS_KEY": SECRET,
    "AWS_SESSION_TOKEN": SECRET + "-session",
    "MLFLOW_TRACKING_PASSWORD": SECRET + "-mlflow",
    "HF_TOKEN": SECRET + "-hf",
    "WANDB_API_KEY": SECRET + "-wandb",
}


# ---- (a) bind addresses --------------------------------------------------------------------------------
@pytest.fixture
def ui_command(monkeypatch):
    """`langdml ui` with the server start replaced by recording its command line."""
    import subprocess

    from langdml_core.runner import ui

    calls = []

    class Server:  # answers at once, ends with exit code 0
        pid, returncode = 1 << 22, 0

        def __init__(self, cmd, **kwargs):
            calls.append(cmd)

        def poll(self):
            return None

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(subprocess, "Popen", Server)
    monkeypatch.setattr(ui, "answers", lambda url: True)
    monkeypatch.setattr(ui, "port_free", lambda host, port: True)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return calls


def test_ui_binds_to_localhost_by_default(ui_command, tmp_path, capsys):
    assert main(["ui", "--results", str(tmp_path)]) == 0
    cmd = ui_command[0]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert "at http://127.0.0.1:5000" in capsys.readouterr().out


def test_ui_other_address_only_when_asked(ui_command, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["ui", "--help"])
    assert "--host HOST" in capsys.readouterr().out
    assert main(["ui", "--results", str(tmp_path), "--host", "0.0.0.0", "--port", "5001"]) == 0
    cmd = ui_command[0]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0" and cmd[cmd.index("--port") + 1] == "5001"


def test_ui_never_prints_the_password_of_a_tracking_uri(ui_command, capsys):
    uri = f"http://alice:{SECRET}@mlflow.internal:5000"
    assert main(["ui", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out and "http://***@mlflow.internal:5000" in out
    assert uri in ui_command[0]  # the server itself still gets the real URI


@pytest.mark.parametrize(
    "uri, shown",
    [
        (f"http://alice:{SECRET}@host:5000", "http://***@host:5000"),
        (f"https://{SECRET}@host/mlflow", "https://***@host/mlflow"),
        (f"postgresql://ml:{SECRET}@db:5432/mlflow", "postgresql://***@db:5432/mlflow"),
        ("sqlite:////work/results/mlflow.db", "sqlite:////work/results/mlflow.db"),
        ("http://host:5000/path@v2", "http://host:5000/path@v2"),  # an @ after the host is no password
    ],
)
def test_redact(uri, shown):
    assert redact(uri) == shown


def test_unreachable_tracking_server_error_hides_the_password():
    from langdml_core.errors import UserError
    from langdml_core.runner.tracking_store import check_tracking

    with pytest.raises(UserError) as err:
        check_tracking(f"http://alice:{SECRET}@127.0.0.1:9")
    assert SECRET not in str(err.value) and "http://***@127.0.0.1:9" in str(err.value)


def test_local_ray_starts_without_dashboard(monkeypatch, tmp_path):
    """The embedded Ray of a laptop sweep runs no dashboard (nothing listens beyond Ray's own ports)."""
    import ray

    from langdml_core.runner.sweep_file import load_sweep
    from langdml_core.runner.tune import prepare

    calls = []
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 2.0}}])
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = argparse.Namespace(
        results=str(tmp_path), storage=None, tracking_uri=None, address=None, local_gpus=0, cpus_per_trial=1
    )
    prepare(
        load_sweep(ROOT / "tests" / "fixtures" / "tiny_sweep.py"), args, str(tmp_path / "ray" / "tiny"), False
    )
    assert calls and calls[0]["address"] == "local" and calls[0]["include_dashboard"] is False


# ---- (b) no secret in MLflow, trial files or logs ------------------------------------------------------
def files_containing(needle: bytes, *roots: Path) -> list[str]:
    found = []
    for path in itertools.chain.from_iterable(Path(root).rglob("*") for root in roots):
        try:
            if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
                found.append(str(path))
        except OSError:  # a socket or a file removed while we walk
            pass
    return found


@pytest.fixture(scope="module")
def sweep_with_secrets(tmp_path_factory):
    """A tiny sweep run end to end with fake secrets in the environment and a canary config value."""
    tmp_path = tmp_path_factory.mktemp("secrets")
    canary = "CANARY-LANGDML-PARAM"  # a config value: it must be found, or the search proves nothing
    temp = Path(ray_temp(tmp_path))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in SECRET_ENV.items():
            patch.setenv(name, value)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        try:
            result = run_sweep(tmp_path, "--seeds", "1", "--set", f"language.prompt=a {canary} of a {{}}")
            found = {value: files_containing(value.encode(), tmp_path, temp) for value in SECRET_ENV.values()}
            canaries = files_containing(canary.encode(), tmp_path / "results")
            ray_logs = [p for p in temp.rglob("*") if p.suffix in (".log", ".out", ".err")]
        finally:
            stop_ray(tmp_path)
    return {"result": result, "found": found, "canaries": canaries, "ray_logs": ray_logs, "temp": str(temp)}


@pytest.mark.slow
def test_secrets_never_reach_mlflow_trial_files_or_output(sweep_with_secrets):
    run = sweep_with_secrets
    assert any(path.endswith("mlflow.db") for path in run["canaries"]), run["canaries"]  # params searched
    assert any(Path(path).name == "config.json" for path in run["canaries"])  # trial files and artifacts
    assert len(run["ray_logs"]) > 5  # Ray's own logs were there to search
    output = run["result"].stdout + run["result"].stderr
    for value, paths in run["found"].items():
        assert value not in output
        assert [p for p in paths if not p.startswith(run["temp"])] == []  # MLflow db, artifacts, results/
    for name in ("MLFLOW_TRACKING_PASSWORD", "HF_TOKEN", "WANDB_API_KEY"):
        assert run["found"][SECRET_ENV[name]] == []  # nowhere, Ray's logs included


@pytest.mark.slow
def test_aws_credentials_never_reach_rays_logs(sweep_with_secrets):
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        assert sweep_with_secrets["found"][SECRET_ENV[name]] == []


class AuthProxy:
    """An MLflow server behind HTTP basic auth, as a credentialed team server is: requests without
    alice's password are refused (401, counted), the others are forwarded to the plain server."""

    def __init__(self, upstream_port: int, user: str, password: str):
        import base64
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        proxy = self
        self.accepted = self.refused = 0

        class Handler(BaseHTTPRequestHandler):
            def forward(self):
                if self.headers.get("Authorization") != want:
                    proxy.refused += 1
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="mlflow"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                proxy.accepted += 1
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "host")
                }
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = forward

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.slow
def test_a_password_in_the_tracking_uri_reaches_no_file_log_or_output(tmp_path):
    """A sweep logging to a password-protected MLflow server through http://alice:PASSWORD@host: every run
    lands, every request carried the password, and the password is in no file the sweep, Tune, Ray or
    MLflow wrote (Tune's experiment state and tuner.pkl, trial params/results, Ray's worker logs, the
    server's database and artifacts) and not in the driver's output."""
    import time
    import urllib.request

    import mlflow
    from test_faults import free_port

    password = SECRET + "-in-the-uri"
    upstream = free_port()
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{server_dir / 'mlflow.db'}",
         "--artifacts-destination", str(server_dir / "artifacts"), "--host", "127.0.0.1", "--port", str(upstream),
         "--workers", "1"],
        cwd=server_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    proxy = AuthProxy(upstream, "alice", password)
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{upstream}/health", timeout=2).read()
                break
            except OSError:
                assert time.time() < deadline, "the MLflow server did not start"
                time.sleep(0.5)
        uri = f"http://alice:{password}@127.0.0.1:{proxy.port}"
        result = run_sweep(tmp_path, "--seeds", "1", "--tracking-uri", uri)
        client = mlflow.MlflowClient(f"http://127.0.0.1:{upstream}")  # the server itself, no password
        runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
        temp = Path(ray_temp(tmp_path))
        found = files_containing(password.encode(), tmp_path, temp)
        ray_logs = [p for p in temp.rglob("*") if p.suffix in (".log", ".out", ".err")]
    finally:
        stop_ray(tmp_path)
        proxy.server.shutdown()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    assert proxy.accepted > 10 and proxy.refused == 0  # the driver and the trials all sent the password
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}  # the parent and two trials
    assert all("test/recall_at_1" in r.data.metrics for r in runs if r.data.tags.get("mlflow.parentRunId"))
    output = result.stdout + result.stderr
    assert password not in output and "http://***@127.0.0.1" in output
    assert len(ray_logs) > 5 and any((tmp_path / "results" / "ray" / "tiny").rglob("tuner.pkl"))
    assert found == []


# ---- (c) the AWS cluster: SSH is the only port open to the internet ------------------------------------
def ray_inbound_rules(config: dict) -> list[dict]:
    """The ingress rules Ray's AWS launcher gives the cluster's security group: its own defaults (read from
    Ray's installed source, whose module needs boto3 to import) plus the yaml's IpPermissions."""
    import ray.autoscaler

    source = Path(ray.autoscaler.__file__).parent / "_private" / "aws" / "config.py"
    wanted = {
        "_create_default_inbound_rules",
        "_create_default_intracluster_inbound_rules",
        "_create_default_ssh_inbound_rules",
    }
    tree = ast.parse(source.read_text())
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in wanted]
    assert len(functions) == len(wanted), "Ray's AWS launcher no longer has the default-rule functions"
    namespace: dict = {"itertools": itertools}
    exec(compile(ast.Module(functions, type_ignores=[]), str(source), "exec"), namespace)
    extended = config["provider"].get("security_group", {}).get("IpPermissions", [])
    return namespace["_create_default_inbound_rules"]({"sg-cluster"}, extended)


def open_to_internet(rules: list[dict]) -> list[tuple]:
    """(protocol, from port, to port) of every rule that admits 0.0.0.0/0 or ::/0."""
    return [
        (rule.get("IpProtocol"), rule.get("FromPort"), rule.get("ToPort"))
        for rule in rules
        if any(r.get("CidrIp") == "0.0.0.0/0" for r in rule.get("IpRanges", []))
        or any(r.get("CidrIpv6") == "::/0" for r in rule.get("Ipv6Ranges", []))
    ]


def test_gpu_cluster_opens_only_ssh_to_the_internet():
    config = yaml.safe_load((ROOT / "cluster" / "gpu.yaml").read_text())
    assert config["provider"]["type"] == "aws"
    # No node brings its own (unchecked) security group or network interface: Ray's group applies to all.
    for name, node_type in config["available_node_types"].items():
        assert not {"SecurityGroupIds", "NetworkInterfaces"} & set(node_type["node_config"]), name
    assert "IpPermissions" not in config["provider"].get("security_group", {})  # the yaml adds no rule
    assert open_to_internet(ray_inbound_rules(config)) == [("tcp", 22, 22)]
    # the dashboard listens on the head's loopback only (reached through an SSH tunnel)
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "--dashboard-host=0.0.0.0" not in head_start


def test_an_extra_open_port_would_be_caught():
    config = yaml.safe_load((ROOT / "cluster" / "gpu.yaml").read_text())
    config["provider"].setdefault("security_group", {})["IpPermissions"] = [
        {"FromPort": 5000, "ToPort": 5000, "IpProtocol": "tcp", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}
    ]
    assert open_to_internet(ray_inbound_rules(config)) == [("tcp", 22, 22), ("tcp", 5000, 5000)]
