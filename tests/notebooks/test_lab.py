"""`make lab` in headless Chromium: train.ipynb runs through JupyterLab's own menus, on the
tests' store, and is recorded in MLflow; the checkout's notebook is never saved."""
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request

import psutil
import pytest

from compare.test_ui import CHROMIUM, SCREENSHOTS, _free_port, chromium_page
from conftest import ROOT

NOTEBOOK = ROOT / "notebooks" / "train.ipynb"
START_TIMEOUT_S = 120
RUN_TIMEOUT_MS = 300_000
# JupyterLab's settings for the test: nothing may write the notebook behind the test's back
# (autosave), every cell stays in the page (no windowing), no news fetched (offline machine).
LAB_SETTINGS = {
    "docmanager-extension/plugin": {"autosave": False},
    "notebook-extension/tracker": {"windowingMode": "none"},
    "apputils-extension/notification": {"fetchNews": "false"},
}
# JupyterLab 4 renders a cell's error like its stderr stream (this MIME type); only the error
# holds IPython's traceback. MLflow writes its warnings to stderr too.
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
TRACEBACK = "Traceback"
RUN_ENDED = f"""() => {{
    const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
        .map(p => p.textContent.trim());
    const idle = document.querySelector('.jp-Notebook-ExecutionIndicator[data-status="idle"]');
    const failed = [...document.querySelectorAll('{STDERR}')]
        .some(o => o.textContent.includes('{TRACEBACK}'));
    return idle !== null && !prompts.includes('[*]:')
        && (failed || prompts.length > 0 && prompts.every(p => /^\\[\\d+\\]:$/.test(p)));
}}"""  # a failed cell stops Run All: the cells after it keep an empty prompt


def _settings(folder):
    """A JupyterLab user-settings folder holding LAB_SETTINGS."""
    for name, values in LAB_SETTINGS.items():
        plugin, file = name.split("/")
        path = folder / "@jupyterlab" / plugin / f"{file}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return folder


def _config(folder, checkpoints):
    """A Jupyter config folder that keeps JupyterLab's checkpoints out of the checkout."""
    folder.mkdir()
    (folder / "jupyter_server_config.json").write_text(json.dumps(
        {"FileCheckpoints": {"checkpoint_dir": str(checkpoints)}}))
    return folder


def _printed_url(log, server) -> str:
    """The URL with its token that `make lab` prints, once the server answers."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert server.poll() is None, f"make lab exited with {server.returncode}: {log.read_text()}"
        found = re.search(r"http://127\.0\.0\.1:\d+/lab\?token=\w+", log.read_text())
        if found:
            return found.group(0)
        time.sleep(0.5)
    raise AssertionError(f"make lab printed no URL with a token in {START_TIMEOUT_S} s:\n"
                         f"{log.read_text()}")


def _stop(server) -> None:
    """SIGTERM to make's process group; JupyterLab shuts its kernels down; all must end."""
    processes = psutil.Process(server.pid).children(recursive=True)
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=60)
    _, alive = psutil.wait_procs(processes, timeout=30)
    for process in alive:
        process.kill()
    assert not alive, f"still running after make lab was stopped: {alive}"


@pytest.fixture
def lab(store, tmp_path):
    """`make lab` on a free loopback port, with the tests' store and the smoke preset; its
    printed URL. JupyterLab's config, settings and state live in tmp_path."""
    log = tmp_path / "lab.log"
    env = {**os.environ, "SWEEPBOOK_OVERRIDES": f"debug=default "
                                                f"paths.output_dir={tmp_path / 'outputs'}",
           "JUPYTER_CONFIG_DIR": str(_config(tmp_path / "config", tmp_path / "checkpoints")),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(_settings(tmp_path / "settings")),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
           "BROWSER": "true"}  # no browser of the machine's own opens the URL
    # -o: never reinstall the venv from the test, even if pyproject.toml just changed
    server = subprocess.Popen(["make", "-s", "-o", ".venv/.installed", "lab",
                               f"LAB_PORT={_free_port()}"],
                              cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        yield _printed_url(log, server)
    finally:
        _stop(server)


def _run_all_cells(page) -> None:
    page.locator(".jp-StatusBar-Widget", has_text="Python 3 (ipykernel) | Idle").wait_for(
        timeout=START_TIMEOUT_S * 1000)  # the kernel has started
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()
    page.wait_for_function(RUN_ENDED, timeout=RUN_TIMEOUT_MS, polling=1000)


def _close_without_saving(page) -> None:
    page.locator(".lm-TabBar-tab.jp-mod-current .lm-TabBar-tabCloseIcon").click()
    page.get_by_role("button", name="Discard").click()
    page.locator(".jp-NotebookPanel").wait_for(state="detached", timeout=30_000)


@pytest.mark.slow
def test_make_lab_runs_train_notebook_in_chromium(lab, client):
    assert CHROMIUM.is_file(), "install Debian's chromium and chromium-driver (make test does)"
    base, token = lab.split("/lab?token=")
    with pytest.raises(urllib.error.HTTPError, match="403"):  # the token is required
        urllib.request.urlopen(f"{base}/api/sessions", timeout=10)
    before = NOTEBOOK.read_bytes()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    screenshot = SCREENSHOTS / "jupyterlab-train.png"
    with chromium_page(height=1000) as page:
        page.goto(f"{base}/lab/tree/notebooks/train.ipynb?token={token}")
        result = page.locator(".jp-CodeCell").last
        try:
            _run_all_cells(page)
        finally:
            result.scroll_into_view_if_needed()
            page.screenshot(path=str(screenshot))
        stderr = page.locator(STDERR).all_inner_texts()
        errors = [text for text in stderr if TRACEBACK in text]
        assert not errors, "cells failed:\n" + "\n".join(errors)
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        assert all(re.fullmatch(r"\[\d+\]:", p.strip()) for p in prompts), prompts
        assert "test accuracy:" in result.locator(".jp-OutputArea").inner_text()
        _close_without_saving(page)
    print(f"screenshot: {screenshot}")
    [run] = client.search_runs([client.get_experiment_by_name("debug").experiment_id])
    assert run.info.status == "FINISHED"
    assert "test_acc" in run.data.metrics
    assert NOTEBOOK.read_bytes() == before, "JupyterLab saved the checkout's notebook"
