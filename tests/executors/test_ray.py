"""The Ray executor on a real Ray: a local one started for a sweep, and a cluster of two nodes
on this machine (ray.cluster_utils.Cluster) logging to a real sweepbook server."""
import psutil
import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def _listening(pids):
    return {c.laddr.ip for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.pid in pids}


def test_a_local_ray_listens_on_loopback_only_and_stops_with_the_sweep():
    from sweepbook.executors.ray_tasks import RayExecutor

    executor = RayExecutor()
    executor.prepare(str(ROOT / "notebooks" / "train.ipynb"), "train", [])
    try:
        started = {p.pid for p in psutil.Process().children(recursive=True)}
        assert started, "Ray started no process"
        assert _listening(started) and _listening(started) <= {"127.0.0.1", "::ffff:127.0.0.1"}
        assert executor.workers >= 1
    finally:
        executor.close()
    left = [pid for pid in started if psutil.pid_exists(pid)
            and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not left, f"Ray processes left after the sweep: {left}"
