"""What a sweep shows while it runs: a live table in a Jupyter kernel, a bar in a terminal."""
import builtins
import atexit
import html
import json
import re
import subprocess
import sys
import time

import pytest

from sweepbook.sweep.plan import Job
from sweepbook.sweep.progress import LiveTable, Row, render
from sweepbook.sweep.results import JobResult

from conftest import ROOT

TRAIN = str(ROOT / "notebooks" / "train.ipynb")


def job(index: int, name: str) -> Job:
    return Job(index, [name], name, "hash", "debug", "sqlite://", None, "/tmp")


def ended(index: int, name: str, status: str, metric=None, error=None) -> JobResult:
    return JobResult(index, name, status, metric, 1.25, None, None, error)


def table_rows(page: str):
    """The table's body rows as lists of cell texts."""
    return [re.findall(r"<td[^>]*>(.*?)</td>", row)
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page.split("<tbody>")[1])]


def test_the_best_is_finished_never_pruned_and_follows_the_direction():
    rows = [Row(0, "a", "FINISHED", 0.7, 3.0), Row(1, "b", "PRUNED", 0.9, 1.0),
            Row(2, "c", "SKIPPED", 0.8), Row(3, "d", "FAILED", 0.95, 2.0),
            Row(4, "e", "RUNNING")]
    highest = render("search s", 10, rows, "val_acc", "max")
    assert "search s: 4 of 10 done (1 running, 1 finished, 1 pruned, 1 failed, 1 earlier); " \
           "best val_acc: 0.8 (#2 c)" in highest["text/html"]
    assert highest["text/plain"].startswith("search s: 4 of 10 done")
    assert [cells[:3] for cells in table_rows(highest["text/html"])] == [
        ["0", "a", "FINISHED"], ["1", "b", "PRUNED"], ["2", "c", "SKIPPED"],
        ["3", "d", "FAILED"], ["4", "e", "RUNNING"]]
    assert '<tr style="font-weight:bold"><td>2</td>' in highest["text/html"]
    lowest = render("search s", 10, rows, "val_loss", "min")["text/html"]
    assert "best val_loss: 0.7 (#0 a)" in lowest
    nothing = render("sweep x", 3, [Row(0, "a", "PRUNED", 0.9)], "val_acc", "max")["text/html"]
    assert "best val_acc: none yet" in nothing


def test_names_and_errors_are_escaped():
    rows = [Row(0, "<b>model=x&y</b>", "FAILED", None, 2.0, 'bad "quote" <tag>')]
    page = render("sweep <x>", 1, rows, "val_acc", "max")["text/html"]
    assert "<b>" not in page and "&lt;b&gt;model=x&amp;y&lt;/b&gt;" in page
    assert "sweep &lt;x&gt;" in page
    assert 'title="bad &quot;quote&quot; &lt;tag&gt;"' in page


def test_a_huge_sweep_shows_running_latest_ended_and_best_and_counts_the_hidden():
    rows = [Row(i, f"job{i}", "FINISHED", i / 10_000) for i in range(10_000)]
    rows[7].metric = 2.0  # the best, long ago
    rows += [Row(10_000 + i, f"run{i}", "RUNNING") for i in range(3)]
    bundle = render("sweep big", 10_003, rows, "val_acc", "max", ended_rows=5)
    shown = [int(cells[0]) for cells in table_rows(bundle["text/html"])]
    assert shown == [7, 9995, 9996, 9997, 9998, 9999, 10_000, 10_001, 10_002]
    assert "9,994 more ended rows hidden" in bundle["text/html"]
    assert "10000 of 10003 done (3 running, 10000 finished); best val_acc: 2 (#7 job7)" \
        in bundle["text/plain"]
    assert len(bundle["text/html"]) < 3_000


@pytest.fixture
def displays(monkeypatch):
    """What a real IPython shell (no kernel) displayed so far, as a function; the globals
    the shell sets (__main__, builtins, an exit hook) are put back after."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    from traitlets.config import Config

    assert not InteractiveShell.initialized()
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    names = set(vars(builtins))
    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    try:
        with capture_output() as captured:
            yield lambda: captured.outputs  # what was displayed so far
    finally:
        atexit.unregister(shell.atexit_operations)
        InteractiveShell.clear_instance()
        for name in set(vars(builtins)) - names:
            delattr(builtins, name)


def test_updates_are_merged_into_one_display_and_the_end_is_always_drawn(displays):
    earlier = [ended(0, "old", "SKIPPED", 0.5)]
    table = LiveTable("sweep x", 3, earlier, "val_acc", "max", refresh=60)
    earlier.append(ended(9, "grown later", "FINISHED"))  # a search's result list grows
    table.started(job(1, "model=cnn"))
    table.started(job(2, "model=mlp"))
    table.ended(ended(1, "model=cnn", "FINISHED", 0.75))
    assert [output.update for output in displays()] == [False]  # within 60 s: not drawn yet
    table.ended(ended(2, "model=mlp", "FAILED", error="boom"))
    table.close()
    assert [output.update for output in displays()] == [False, True]
    first, last = (output.data["text/html"] for output in displays())
    assert "sweep x: 1 of 3 done (1 earlier); best val_acc: 0.5 (#0 old)" in first
    assert "sweep x: 3 of 3 done (1 finished, 1 failed, 1 earlier); " \
           "best val_acc: 0.75 (#1 model=cnn)" in last
    assert [cells[:4] for cells in table_rows(last)] == [
        ["0", "old", "SKIPPED", "0.5"], ["1", "model=cnn", "FINISHED", "0.75"],
        ["2", "model=mlp", "FAILED", ""]]


def test_a_change_inside_the_interval_is_drawn_when_it_ends(displays):
    table = LiveTable("sweep x", 2, [], "val_acc", "max", refresh=0.3)
    table.started(job(0, "model=cnn"))
    deadline = time.monotonic() + 10
    while len(displays()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [output.update for output in displays()] == [False, True]
    assert table_rows(displays()[-1].data["text/html"])[0][:3] == ["0", "model=cnn", "RUNNING"]
    table.started(job(1, "model=mlp"))  # inside the interval again: a timer waits
    table.close()
    drawn = len(displays())
    time.sleep(0.6)
    assert len(displays()) == drawn  # closed: the waiting timer draws nothing
    assert "0 of 2 done (2 running)" in displays()[-1].data["text/html"]  # close() drew it


def test_a_plain_process_gets_the_terminal_bar_and_never_imports_ipython():
    code = ("import sys\n"
            "from sweepbook.sweep.progress import progress\n"
            "shown = progress('sweep x', 2, [], 'val_acc', 'max', False)\n"
            "shown.close()\n"
            "quiet = progress('sweep x', 2, [], 'val_acc', 'max', True)\n"
            "print(type(shown).__name__, type(quiet).__name__, 'IPython' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["TerminalProgress", "TerminalProgress", "False"]
    assert "sweep x:   0%|" in done.stderr


SWEEP_CELL = """
import json
from sweepbook.sweep.driver import run_sweep

result = run_sweep({notebook!r}, ["debug=default", "model=cnn,mlp", {output!r}], workers=2)
print(json.dumps({{"metric": result.metric, "rows": [[r.index, r.name, r.status, r.metric]
                                                  for r in result.results]}}))
"""


@pytest.mark.slow
def test_a_sweep_in_a_kernel_shows_one_table_updated_in_place(store, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    cell = SWEEP_CELL.format(notebook=TRAIN, output=f"paths.output_dir={tmp_path / 'out'}")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = notebook.cells[0].outputs
    printed = "".join(output.get("text", "") for output in outputs
                      if output.output_type == "stream" and output.name == "stdout")
    swept = json.loads(printed.strip().splitlines()[-1])
    assert [row[2] for row in swept["rows"]] == ["FINISHED", "FINISHED"]
    tables = [output for output in outputs if output.output_type == "display_data"]
    assert len(tables) == 1 and "<table>" in tables[0].data["text/html"]
    page = tables[0].data["text/html"]
    shown = table_rows(page)
    assert [cells[:3] for cells in shown] == [[str(index), html.escape(name), status]
                                              for index, name, status, _ in swept["rows"]]
    for cells, (_, _, _, metric) in zip(shown, swept["rows"]):
        assert float(cells[3]) == pytest.approx(metric, rel=1e-3)
    index, name, _, value = max(swept["rows"], key=lambda row: row[3])
    assert html.escape(f"2 of 2 done (2 finished); best {swept['metric']}: {value:.4g} "
                       f"(#{index} {name})") in page
    everything = json.dumps([output for output in outputs])
    assert "%|" not in everything and "widget-view" not in everything  # no tqdm bar
