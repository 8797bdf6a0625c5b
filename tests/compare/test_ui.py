"""`sweepbook ui` on a real sweep's store: the REST API, and the pages in headless Chromium."""
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from sweepbook.cli import runs_page
from sweepbook.tracking.record import NOTEBOOK_HTML_SUFFIX

from conftest import ROOT, SWEEPBOOK

CHROMIUM = Path("/usr/bin/chromium")  # Debian's; `make test` installs it when missing
SCREENSHOTS = ROOT / "outputs" / "tests"
START_TIMEOUT_S = 90


@contextlib.contextmanager
def chromium_page(height: int):
    """A page in Debian's headless Chromium, 1600 pixels wide; the browser closed after."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": 1600, "height": height})
        finally:
            browser.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"sweepbook ui exited with {process.returncode}"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the MLflow UI did not answer at {url} in {START_TIMEOUT_S} s")


@pytest.fixture(scope="module")
def ui(swept_template, tmp_path_factory):
    """`sweepbook ui` on a free loopback port, on the sweep's store (only read here); its
    printed lines; stopped with its server."""
    port = _free_port()
    log = (tmp_path_factory.mktemp("ui") / "ui.log").open("w+")
    process = subprocess.Popen([SWEEPBOOK, "ui", "--port", str(port)], stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True,
                               env={**os.environ, "MLFLOW_TRACKING_URI": swept_template.uri})
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process)
        log.seek(0)
        yield url, log.read()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _sweep_runs(url: str, swept) -> list:
    experiment = json.loads(urllib.request.urlopen(
        f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name={swept.experiment}",
        timeout=30).read())["experiment"]
    found = _post(f"{url}/api/2.0/mlflow/runs/search", {
        "experiment_ids": [experiment["experiment_id"]],
        "filter": f"tags.`sweepbook.sweep_id` = '{swept.sweep_id}'"})
    return experiment["experiment_id"], found["runs"]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _close_the_assistant(page) -> None:
    assistant = page.get_by_role("button", name="Close")
    if assistant.count():
        assistant.first.click()  # the chat panel takes a third of the page


@pytest.mark.slow
def test_ui_prints_its_url_and_serves_the_runs_over_rest(ui, swept_template):
    swept = swept_template
    url, printed = ui
    assert printed.startswith(f"MLflow UI for {swept.uri} at {url} (Ctrl-C stops it)")
    _, runs = _sweep_runs(url, swept)
    names = sorted(run["info"]["run_name"] for run in runs)
    assert names == sorted([f"sweep-{swept.sweep_id}",
                            *(f"model={m},lr={lr},debug=default"
                              for m in ("cnn", "mlp") for lr in ("0.001", "0.01"))])
    assert {run["info"]["status"] for run in runs} == {"FINISHED"}


@pytest.mark.slow
def test_experiment_page_shows_the_runs_in_chromium(ui, swept_template):
    swept = swept_template
    assert CHROMIUM.is_file(), "install Debian's chromium and chromium-driver (make test does)"
    url, _ = ui
    experiment_id, runs = _sweep_runs(url, swept)
    parent_name = f"sweep-{swept.sweep_id}"
    children = [r["info"]["run_name"] for r in runs if r["info"]["run_name"] != parent_name]
    assert len(children) == 4
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    screenshot = SCREENSHOTS / "mlflow-ui-sweep.png"
    with chromium_page(height=900) as page:
        page.goto(f"{url}/{runs_page(experiment_id)}")
        parent = page.locator("[role=row]", has_text=parent_name)
        parent.wait_for(state="visible", timeout=60_000)
        parent.locator("button").first.click()  # unfold the sweep's child runs
        _close_the_assistant(page)
        page.locator(".ag-header-cell", has_text="Run Name").locator(
            ".ag-header-cell-resize").dblclick(force=True)  # widen to fit the names
        for name in children:
            page.get_by_text(name, exact=True).wait_for(state="visible", timeout=30_000)
        page.screenshot(path=str(screenshot))
    print(f"screenshot: {screenshot}")
    assert screenshot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_a_runs_executed_notebook_reads_rendered_in_the_artifact_viewer(ui, swept_template):
    """Each run logs its executed notebook as HTML beside the .ipynb: the UI's artifact viewer
    shows the .html (in an iframe) as JupyterLab shows the notebook, outputs and figures."""
    assert CHROMIUM.is_file(), "install Debian's chromium and chromium-driver (make test does)"
    url, _ = ui
    experiment_id, runs = _sweep_runs(url, swept_template)
    [run] = [r for r in runs if r["info"]["run_name"] == "model=cnn,lr=0.01,debug=default"]
    run_id = run["info"]["run_id"]
    logged = {f["path"] for f in _get(f"{url}/api/2.0/mlflow/artifacts/list?run_id={run_id}")
              ["files"]}
    [page_name] = [path for path in logged if path.endswith(NOTEBOOK_HTML_SUFFIX)]
    assert page_name[:-len(NOTEBOOK_HTML_SUFFIX)] + ".ipynb" in logged
    test_acc = next(m["value"] for m in run["data"]["metrics"] if m["key"] == "test_acc")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    screenshot = SCREENSHOTS / "mlflow-ui-notebook.png"
    with chromium_page(height=1000) as page:
        page.goto(f"{url}/#/experiments/{experiment_id}/runs/{run_id}/artifactPath/"
                  f"{urllib.parse.quote(page_name, safe='=,')}")  # %3D: no file selected
        notebook = page.frame_locator("iframe.mlflow-html-iframe")
        title = notebook.get_by_role("heading", name=re.compile("Train a model, tracked"))
        title.wait_for(state="visible", timeout=60_000)
        _close_the_assistant(page)
        # the last cell's output, with the accuracy the run logged
        notebook.get_by_text(f"test accuracy: {test_acc:.4f}").wait_for(state="attached")
        figures = notebook.locator("img").evaluate_all(
            "images => images.map(image => image.complete && image.naturalWidth)")
        page.screenshot(path=str(screenshot))
    print(f"screenshot: {screenshot}")
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    assert len(figures) == 3 and all(width > 100 for width in figures), figures
