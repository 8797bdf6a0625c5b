"""The Ray executor on a real Ray: a local one started for a sweep, and a cluster of two nodes
on this machine (ray.cluster_utils.Cluster) logging to a real sweepbook server."""
import re
import signal
import subprocess
import time

import psutil
import pytest

from conftest import ROOT, SWEEPBOOK
from sweepbook.executors.ray_tasks import LOOPBACK_ONLY

# One worker (pytest -n) runs them all, with the server tests: one server, one cluster.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("server")]


def _children() -> set:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _listening(pids):
    return {c.laddr.ip for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.pid in pids}


def test_a_local_ray_listens_on_loopback_only_and_stops_with_the_sweep():
    from sweepbook.executors.ray_tasks import RayExecutor

    executor = RayExecutor()
    others = _children()  # a session's server, for one
    executor.prepare(str(ROOT / "notebooks" / "train.ipynb"), "train", [])
    try:
        started = _children() - others
        assert started, "Ray started no process"
        assert _listening(started) and _listening(started) <= {"127.0.0.1", "::ffff:127.0.0.1"}
        assert executor.workers >= 1
    finally:
        executor.close()
    left = [pid for pid in started if psutil.pid_exists(pid)
            and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not left, f"Ray processes left after the sweep: {left}"


def _started(start, tries: int = 2):
    """Ray gives a node 30 s to start (hard-coded); on a loaded 2-core machine running the
    suite on two workers one start can take longer: then it is tried once more."""
    for attempt in range(tries):
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        try:
            return start()
        except Exception as error:
            for process in psutil.Process().children(recursive=True):  # what it started:
                if process.pid not in before:  # stopped by PID before the next try
                    process.kill()
            if "timed out during startup" not in str(error) or attempt == tries - 1:
                raise


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes on this machine, one CPU each, on loopback; stopped after by the PIDs
    Ray's own test cluster started (never `ray stop`)."""
    from ray.cluster_utils import Cluster

    from sweepbook.executors.ray_tasks import _loopback_only

    others = _children()  # a session's server, for one
    with _loopback_only():
        made = _started(lambda: Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "node_ip_address": "127.0.0.1"}))
        made.worker = _started(lambda: made.add_node(num_cpus=1, node_ip_address="127.0.0.1"))
    before = _children() - others
    yield made
    made.shutdown()
    left = [pid for pid in before if psutil.pid_exists(pid)
            and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not left, f"Ray processes left: {left}"


def _runs(uri: str, sweep_id: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(experiments, f"tags.`sweepbook.sweep_id` = '{sweep_id}'")


def _wait_for_a_job_on(uri: str, node_id: str, process, timeout: float = 300):
    """Poll the server until a job runs on the node `node_id` ("": on any node)."""
    from mlflow.tracking import MlflowClient

    client, deadline = MlflowClient(uri), time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        experiments = [e.experiment_id for e in client.search_experiments()]
        running = client.search_runs(experiments, "attributes.status = 'RUNNING'")
        workers = [r.data.tags["sweepbook.worker"] for r in running
                   if "sweepbook.worker" in r.data.tags]  # a job's run, not the parent's
        if any(node_id in worker for worker in workers):
            return
        time.sleep(0.5)
    raise AssertionError("no job ran on the second node")


def test_a_sweep_on_two_nodes_survives_losing_one_and_the_same_command_completes_it(
        cluster, tracking_server):
    """Every run lands on the server with its notebook and log; a node removed mid-sweep
    fails its job with the reason (exit 1), and the same command, with a node back, runs
    only what is missing."""
    sweep = ["sweep", "notebooks/train.ipynb", "debug=default", "seed=0,1,2,3", "tracking=server",
             "--executor", "ray", f"executor.address={cluster.address}", "--quiet"]
    env = {**tracking_server.env, **LOOPBACK_ONLY}
    first = subprocess.Popen([SWEEPBOOK, *sweep], cwd=tracking_server.root, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_a_job_on(tracking_server.uri, cluster.worker.node_id, first)
    cluster.remove_node(cluster.worker)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 1, out + err
    sweep_id = re.search(r"^sweep (\w+):", out, re.M).group(1)
    client, runs = _runs(tracking_server.uri, sweep_id)
    lost = [r for r in runs if r.data.tags.get("sweepbook.role") != "parent"
            and r.info.status != "FINISHED"]
    assert lost and all(r.info.status in ("FAILED", "KILLED") for r in lost)
    errors = [r.data.tags.get("sweepbook.error", "") for r in lost]
    assert all("its Ray" in e for e in errors), errors

    cluster.worker = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    again = subprocess.run([SWEEPBOOK, *sweep], cwd=tracking_server.root, env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{4 - len(lost)} skipped" in again.stdout
    client, runs = _runs(tracking_server.uri, sweep_id)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    children = [r for r in runs if r.data.tags.get("sweepbook.role") != "parent"]
    finished = {r.data.tags["sweepbook.config_hash"]: r for r in children
                if r.info.status == "FINISHED"}
    assert len(finished) == 4
    workers = {r.data.tags.get("sweepbook.worker") for r in children}
    assert len(workers) >= 2, workers  # both nodes ran jobs
    for run in finished.values():  # proxied over HTTP: nothing shared but the server
        logged = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert "logs" in logged and any(p.endswith(".ipynb") for p in logged)

    listed = tracking_server.sweepbook("runs", "--sweep", sweep_id, "tracking=server")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("FINISHED") >= 4


def test_a_search_prunes_trials_on_ray_with_its_study_on_the_server(cluster, tracking_server):
    tune = ["tune", "notebooks/train.ipynb", "optimizer.lr=tag(log,interval(1e-4,1e-1))",
            "model=choice(cnn,mlp)", "debug=default", "training.epochs=6", "tracking=server",
            "--trials", "6", "--executor", "ray", f"executor.address={cluster.address}",
            "--quiet"]
    done = subprocess.run([SWEEPBOOK, *tune], cwd=tracking_server.root,
                          env={**tracking_server.env, **LOOPBACK_ONLY}, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    study = re.search(r"^search (\S+):", done.stdout, re.M).group(1)
    assert "postgresql" in done.stdout  # the study is in the server's own database
    _, runs = _runs(tracking_server.uri, study)
    pruned = [r for r in runs if r.data.tags.get("sweepbook.trial_state") == "PRUNED"]
    assert pruned and all(r.info.status == "KILLED" and "sweepbook.pruned" in r.data.tags
                          for r in pruned)
    assert not [r for r in runs if r.info.status == "RUNNING"]


def test_sigterm_cancels_the_ray_tasks_and_leaves_no_run_running(cluster, tracking_server):
    """SIGTERM to the driver (ray.init installs a handler of its own: the driver's stop path
    must still be the one that runs) cancels the tasks, whose jobs end their runs KILLED, and
    exits 143."""
    from mlflow.tracking import MlflowClient

    driver = subprocess.Popen(
        [SWEEPBOOK, "sweep", "notebooks/train.ipynb", "debug=default", "training.epochs=400",
         "seed=10,11", "tracking=server", "--executor", "ray",
         f"executor.address={cluster.address}", "--quiet"], cwd=tracking_server.root,
        env={**tracking_server.env, **LOOPBACK_ONLY}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    _wait_for_a_job_on(tracking_server.uri, "", driver)
    driver.send_signal(signal.SIGTERM)
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 143, out + err
    sweep_id = re.search(r"^sweep (\w+):", out, re.M).group(1)
    _, runs = _runs(tracking_server.uri, sweep_id)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    children = [r for r in runs if r.data.tags.get("sweepbook.role") != "parent"]
    assert children and all(r.info.status == "KILLED" for r in children)
    assert any("SIGTERM" in r.data.tags.get("sweepbook.error", "") for r in children)
    assert MlflowClient(tracking_server.uri).get_run(
        [r for r in runs if r.data.tags.get("sweepbook.role") == "parent"][0].info.run_id
    ).info.status == "KILLED"
