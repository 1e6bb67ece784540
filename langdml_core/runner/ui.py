"""``langdml ui``: MLflow's UI on a sweep's tracking store, started and stopped as one process family."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from langdml_core.errors import ConfigError
from langdml_core.runner.places import resolve_places
from langdml_core.runner.tracking_store import redact


def serve(args: argparse.Namespace) -> int:
    """``mlflow ui`` on the sweep's store: refuses a busy port, warns when open beyond this machine, prints
    its address once it answers, and takes its workers down with it (Ctrl-C or SIGTERM)."""
    uri = resolve_places(args.results, tracking_uri=args.tracking_uri).tracking_uri
    if args.host not in LOOPBACK:
        print(
            f"warning: --host {args.host} serves the MLflow UI, and every run's data, to the network without a "
            "password; use the default 127.0.0.1 (and an SSH tunnel) unless that is what you want.",
            file=sys.stderr,
        )
    if not port_free(args.host, args.port):
        raise ConfigError(f"Port {args.port} on {args.host} is in use; pass another --port (e.g. 5001).")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    cmd += ["--host", args.host, "--port", str(args.port)]
    # in this process group, so that whatever stops `langdml ui` as a group (a terminal's Ctrl-C, killpg)
    # stops the server and its workers too; SIGTERM to `langdml ui` alone is passed on below
    server = subprocess.Popen(cmd)

    def stop(*_):
        family = [server.pid, *descendants(server.pid)]  # MLflow's server and its uvicorn workers
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 15
        while time.time() < deadline and any(alive(pid) for pid in family):
            server.poll()  # reaps the server once it exits
            time.sleep(0.2)
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        sys.exit(0)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        address = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
        while server.poll() is None and not answers(address + "/health"):
            time.sleep(0.5)
        if server.poll() is not None:
            print(f"error: the MLflow UI stopped at start (exit code {server.returncode}).", file=sys.stderr)
            return server.returncode or 1
        print(f"MLflow UI for {redact(uri)} at http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
        return server.wait()
    except KeyboardInterrupt:
        stop()
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(proc.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo += children.get(child, [])
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (mlflow ui itself only logs a busy port and exits 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
