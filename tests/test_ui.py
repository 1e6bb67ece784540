"""`langdml ui`: a busy port is refused, a non-loopback address is warned about, the URL is printed once the
server answers, and SIGTERM takes the MLflow server and its workers down."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from langdml_core.runner.cli import main, port_free


def test_a_busy_port_is_refused_in_one_sentence_and_an_open_host_is_warned_about(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not port_free("127.0.0.1", port)
        assert main(["ui", "--results", str(tmp_path), "--port", str(port)]) == 2
        err = capsys.readouterr().err
        assert err == f"error: Port {port} on 127.0.0.1 is in use; pass another --port (e.g. 5001).\n"
        assert main(["ui", "--results", str(tmp_path), "--port", str(port), "--host", "0.0.0.0"]) == 2
        err = capsys.readouterr().err
        assert "warning: --host 0.0.0.0 serves the MLflow UI, and every run's data, to the network" in err
    assert port_free("127.0.0.1", port)


def test_a_reader_that_leaves_early_is_not_an_error():
    shown = subprocess.run(
        f"{sys.executable} -m langdml_core.runner.cli config | head -n 1",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert shown.stdout == "[data]\n" and shown.stderr == ""


@pytest.mark.slow
def test_sigterm_stops_the_ui_server_and_its_workers(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ui = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "langdml_core.runner.cli",
            "ui",
            "--results",
            str(tmp_path),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    server_group = None
    try:
        line = ""  # langdml's line comes once /health answers (MLflow prints its own lines too)
        while not line.startswith("MLflow UI for") and ui.poll() is None:
            line = ui.stdout.readline()
        assert line.startswith("MLflow UI for sqlite:///") and f"http://127.0.0.1:{port}" in line
        assert not port_free("127.0.0.1", port)
        group = os.getpgid(ui.pid)  # `langdml ui` itself
        children = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(p) == ui.pid]
        assert children  # the MLflow server, in its own process group
        server_group = os.getpgid(int(children[0].name))
        assert server_group != group
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=30) == 0
        deadline = time.time() + 20
        while time.time() < deadline and _members(server_group):
            time.sleep(0.5)
        assert not _members(server_group), "MLflow's server or workers outlived `langdml ui`"
        assert port_free("127.0.0.1", port)
    finally:
        if ui.poll() is None:
            ui.kill()
        for pid in _members(server_group) if server_group else []:  # never leave a server behind
            os.kill(pid, signal.SIGKILL)


def _parent(proc: Path) -> int:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _members(group: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.getpgid(int(proc.name)) == group:
                    found.append(int(proc.name))
            except OSError:
                pass
    return found
