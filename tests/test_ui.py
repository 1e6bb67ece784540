"""`langdml ui`: a busy port is refused, a non-loopback address is warned about, the URL is printed once the
server answers, and SIGTERM takes the MLflow server and its workers down."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from langdml_core.runner.cli import main
from langdml_core.runner.ui import alive, descendants, port_free


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
        start_new_session=True,  # as a shell's job: `langdml ui` leads its group, the server is in it
    )
    family = []
    try:
        line = ""  # langdml's line comes once /health answers (MLflow prints its own lines too)
        while not line.startswith("MLflow UI for") and ui.poll() is None:
            line = ui.stdout.readline()
        assert line.startswith("MLflow UI for sqlite:///") and f"http://127.0.0.1:{port}" in line
        assert not port_free("127.0.0.1", port)
        family = descendants(ui.pid)  # the MLflow server and its workers
        assert family and all(os.getpgid(pid) == ui.pid for pid in family)  # a killpg reaches them all
        ui.send_signal(signal.SIGTERM)  # to `langdml ui` alone: it stops them
        assert ui.wait(timeout=30) == 0
        deadline = time.time() + 20
        while time.time() < deadline and any(alive(pid) for pid in family):
            time.sleep(0.5)
        assert not [pid for pid in family if alive(pid)], "MLflow's server or workers outlived `langdml ui`"
        assert port_free("127.0.0.1", port)
    finally:
        if ui.poll() is None:
            ui.kill()
        for pid in family:  # never leave a server behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
