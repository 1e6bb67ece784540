"""On demand (not in CI): open `langdml ui` in a real headless browser and keep a screenshot in results/.

Needs Debian's chromium and the Playwright Python package (its bundled browsers are not used, so nothing is
downloaded at run time):

    apt-get install -y chromium
    .venv/bin/pip install playwright
    .venv/bin/python tests/manual/ui_screenshot.py --sweep demo      # after `make demo`

It starts `langdml ui` on a free loopback port for the MLflow database under --results, opens the sweep's
experiment page, waits until every trial run's name is on the page, saves results/<sweep>/mlflow_ui.png and
prints the run names it saw; then opens the sweep's parent run, waits for its description (its first line:
each setup's test Recall@1) and saves results/<sweep>/mlflow_parent_run.png, then the whole description (the
report) as mlflow_parent_run_report.png. Exit status 1 when a trial run is missing from the
experiment page or the table is missing from the parent run's page.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"{url} did not answer within {seconds:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="demo", help="MLflow experiment (sweep NAME) to show")
    parser.add_argument("--results", default="results")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="browser executable")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ui = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "langdml_core.runner.cli",
            "ui",
            "--results",
            args.results,
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(base + "/health")
        query = f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name={args.sweep}"
        experiment_id = json.loads(urllib.request.urlopen(query, timeout=10).read())["experiment"][
            "experiment_id"
        ]
        search = urllib.request.Request(
            base + "/api/2.0/mlflow/runs/search",
            method="POST",
            headers={"Content-Type": "application/json"},
            data=json.dumps({"experiment_ids": [experiment_id], "max_results": 500}).encode(),
        )
        runs = json.loads(urllib.request.urlopen(search, timeout=10).read())["runs"]
        names = sorted(r["info"]["run_name"] for r in runs)
        parents = [
            r for r in runs if {"key": "langdml.role", "value": "parent"} in r["data"].get("tags", [])
        ]  # the newest parent run of the sweep (runs/search returns the newest first)
        parent_id = parents[0]["info"]["run_id"] if parents else None
        out = Path(args.results) / args.sweep / "mlflow_ui.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{base}/#/experiments/{experiment_id}/runs", wait_until="load")
            page.get_by_text(args.sweep, exact=True).first.wait_for(timeout=60_000)  # the page has loaded
            for label in ("Model training", "Got it"):  # MLflow 3 opens in GenAI mode, with a tip popup
                button = page.get_by_text(label, exact=True)
                if button.count():
                    button.first.click()
                    page.wait_for_timeout(1000)
            page.goto(f"{base}/#/experiments/{experiment_id}/runs", wait_until="load")
            page.get_by_text(names[0], exact=True).first.wait_for(timeout=60_000)
            close = page.get_by_role("button", name="Close")  # the assistant side panel
            if close.count():
                close.first.click()
            # Child runs are nested under the sweep's parent run: the button in its run-name cell expands them
            link = page.get_by_role("link", name=args.sweep, exact=True)
            cell = page.locator("[role=gridcell]").filter(has=link).first
            for _ in range(5):  # the first click can land before the table is ready for it
                if page.get_by_text(names[-1], exact=True).count():
                    break
                cell.locator("button").first.click()
                try:
                    page.get_by_text(names[-1], exact=True).first.wait_for(timeout=5_000)
                except Exception:  # noqa: BLE001 - clicked too early: try again
                    pass
            page.wait_for_timeout(1500)
            seen = [n for n in names if page.get_by_text(n, exact=True).count()]
            page.screenshot(path=str(out), full_page=True)
            table_seen = False
            if parent_id:
                page.goto(f"{base}/#/experiments/{experiment_id}/runs/{parent_id}", wait_until="load")
                header = page.get_by_text("Test Recall@1", exact=False).first  # the description's headline
                try:
                    header.wait_for(timeout=60_000)
                    table_seen = True
                except Exception:  # noqa: BLE001 - reported below
                    pass
                page.wait_for_timeout(2000)
                page.screenshot(path=str(out.with_name("mlflow_parent_run.png")), full_page=True)
                more = page.get_by_text("Show more", exact=True)  # the whole description: the full report
                if more.count():
                    more.first.click()
                    page.wait_for_timeout(1500)
                    page.screenshot(path=str(out.with_name("mlflow_parent_run_report.png")), full_page=True)
            browser.close()
        print(f"experiment {args.sweep} (id {experiment_id}) at {base}: {len(names)} runs")
        for name in names:
            print(f"  {'seen   ' if name in seen else 'MISSING'} {name}")
        print(f"screenshot: {out}")
        if parent_id:
            print(f"parent run {parent_id}: results table {'seen' if table_seen else 'MISSING'}")
            print(f"screenshot: {out.with_name('mlflow_parent_run.png')}")
        return 0 if len(seen) == len(names) and table_seen else 1
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
