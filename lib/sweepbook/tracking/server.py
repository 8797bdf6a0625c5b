"""`sweepbook server start|stop|status`: this project's tracking server, for a team or a
cluster. Debian's PostgreSQL and `mlflow server` on it, everything in
`<project>/.sweepbook/server/`:

    postgres/      PostgreSQL's data folder (the `postgres` user's when sweepbook runs as root)
    password       the database password, in libpq's passfile format, mode 0600
    artifacts/     the runs' artifacts; MLflow proxies them over HTTP: no shared filesystem
    postgres.log, mlflow.log
    state.json     what runs: PIDs, ports, the URI (no password); `tracking=server` reads it

The password is generated once and libpq reads it from its file: the database URLs name the
file (`?passfile=...`), so no URL, command line, environment, log or run holds the password.
MLflow gets its backend's URL in MLFLOW_BACKEND_STORE_URI, never on its command line.

Two databases: `mlflow` (MLflow's backend) and `optuna` (the studies of `sweepbook tune`,
study_database_for): both keep an `alembic_version` table, so they cannot share one.

`stop` ends exactly what `start` started, found by the PIDs in state.json (for MLflow also the
members of its process group born after it): never by name.
"""
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from secrets import token_urlsafe
from typing import List, Optional, Tuple
from urllib.parse import quote, urlsplit

import psutil

from sweepbook.config import (DEFAULT_SERVER_URI, SERVER_FOLDER, SERVER_STATE, TELEMETRY_ENV,
                              ConfigError, project_root)
from sweepbook.env import signal_handlers
from sweepbook.tracking import locks

DB_USER = "sweepbook"  # PostgreSQL's superuser, made by initdb with the password
DB_OS_USER = "postgres"  # runs PostgreSQL when sweepbook runs as root (initdb refuses root)
MLFLOW_DB, OPTUNA_DB = "mlflow", "optuna"
BACKEND_ENV = "MLFLOW_BACKEND_STORE_URI"  # `mlflow server` reads its backend from it
# MLflow's job runner (GenAI scorers) adds 8 processes and ~600 MiB; sweepbook uses none
JOBS_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"
MLFLOW_PORT = urlsplit(DEFAULT_SERVER_URI).port  # MLflow's usual port, when free
HEALTH_TIMEOUT_S = 300  # a fresh database's migrations take ~15 s, a loaded machine longer
STOP_GRACE_S = 15  # SIGTERM ends MLflow in 3-4 s; SIGKILL after this
EXIT_NOT_RUNNING = 3  # `status` when no server runs (as LSB init scripts say)
LOG_TAIL = 20  # lines of a server's log shown when it fails to start
ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # listening everywhere: reach it locally


class ServerError(RuntimeError):
    """The server cannot start or stop as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Folder:
    """The server's files under the project root."""
    path: Path

    @classmethod
    def of_project(cls, root: Optional[Path] = None) -> "Folder":
        return cls((root or project_root()) / SERVER_FOLDER)

    @property
    def data(self) -> Path:
        return self.path / "postgres"

    @property
    def password(self) -> Path:
        return self.path / "password"

    @property
    def artifacts(self) -> Path:
        return self.path / "artifacts"

    @property
    def postgres_log(self) -> Path:
        return self.path / "postgres.log"

    @property
    def mlflow_log(self) -> Path:
        return self.path / "mlflow.log"

    @property
    def state(self) -> Path:
        return self.path / SERVER_STATE.name

    @property
    def lock(self) -> Path:
        return self.path / "server.lock"


@dataclass
class ServerState:
    """What runs, as state.json keeps it. `*_started` is a process's start time: a PID that
    names another process since is not ours."""
    host: str  # the address both servers listen on
    postgres_port: int
    postgres_pid: int
    postgres_started: float
    mlflow_port: Optional[int] = None
    mlflow_pid: Optional[int] = None  # also its process group's id (its own session)
    mlflow_started: Optional[float] = None

    @property
    def uri(self) -> str:
        """MLflow's URI from this machine."""
        return f"http://{_url_host(_local(self.host))}:{self.mlflow_port}"


@dataclass
class Timings:
    """Seconds each step of a start took; init None when the database cluster existed."""
    init: Optional[float]
    postgres: float
    mlflow: float


def _local(host: str) -> str:
    return ANY_ADDRESS.get(host, host)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def read_state(folder: Folder) -> Optional[ServerState]:
    try:
        saved = json.loads(folder.state.read_text())
        return ServerState(**{f.name: saved[f.name] for f in fields(ServerState)})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_state(folder: Folder, state: ServerState) -> None:
    """state.json replaced at once; its `uri` (what conf/tracking/server.yaml reads) only once
    MLflow has a port."""
    saved = {**asdict(state), **({"uri": state.uri} if state.mlflow_port else {})}
    partial = folder.state.with_suffix(".tmp")
    partial.write_text(json.dumps(saved, indent=2) + "\n")
    partial.replace(folder.state)


def database_url(state: ServerState, folder: Folder, database: str) -> str:
    """SQLAlchemy's URL of one of the server's databases (psycopg 3); libpq reads the password
    from its file, so the URL holds none."""
    return (f"postgresql+psycopg://{DB_USER}@{_url_host(_local(state.host))}:"
            f"{state.postgres_port}/{database}?passfile={quote(str(folder.password))}")


def study_database_for(tracking_uri: str) -> Optional[str]:
    """The `optuna` database of this project's server when `tracking_uri` is that server's,
    for `sweepbook tune` (the URL names the password's file); None for any other store."""
    try:
        folder = Folder.of_project()
    except ConfigError:
        return None
    state = read_state(folder)
    if state is None or state.mlflow_port is None or not _same_server(tracking_uri, state.uri):
        return None
    return database_url(state, folder, OPTUNA_DB)


def _same_server(uri: str, ours: str) -> bool:
    loopback = {"localhost": "127.0.0.1"}
    given, mine = urlsplit(uri), urlsplit(ours)
    try:
        return (given.scheme == "http" and given.path in ("", "/") and given.port == mine.port
                and loopback.get(given.hostname, given.hostname) == mine.hostname)
    except ValueError:  # a port that is not a number
        return False


# --- processes ---

def _process(pid: Optional[int], started: Optional[float]) -> Optional[psutil.Process]:
    """Process `pid` if it is still the one that started at `started`, and alive."""
    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - started) > 1 or process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except psutil.Error:
        return None


def mlflow_processes(state: ServerState) -> List[psutil.Process]:
    """MLflow's live processes: its process group, born no earlier than its leader (the group
    keeps its id while any member lives, even after its leader ended)."""
    if state.mlflow_pid is None:
        return []
    members = []
    for process in psutil.process_iter(["create_time", "status"]):
        try:
            if (os.getpgid(process.pid) == state.mlflow_pid
                    and process.info["create_time"] >= state.mlflow_started - 1
                    and process.info["status"] != psutil.STATUS_ZOMBIE):
                members.append(process)
        except (OSError, psutil.Error):
            continue
    return members


def postgres_processes(state: ServerState) -> List[psutil.Process]:
    """PostgreSQL's live processes: the postmaster and its children."""
    postmaster = _process(state.postgres_pid, state.postgres_started)
    if postmaster is None:
        return []
    try:
        return [postmaster, *postmaster.children(recursive=True)]
    except psutil.Error:
        return [postmaster]


def running(state: ServerState) -> bool:
    return (_process(state.mlflow_pid, state.mlflow_started) is not None
            and _process(state.postgres_pid, state.postgres_started) is not None)


def memory_mib(processes: List[psutil.Process]) -> float:
    """Their memory: proportional set size (PostgreSQL's shared buffers counted once), else
    resident size where the smaps cannot be read."""
    total = 0
    for process in processes:
        try:
            try:
                total += process.memory_full_info().pss
            except (psutil.AccessDenied, AttributeError):
                total += process.memory_info().rss
        except psutil.Error:
            continue
    return total / 2 ** 20


# --- PostgreSQL ---

def _binaries() -> Tuple[str, str]:
    """initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<newest>/bin."""
    found = shutil.which("initdb")
    if found:
        folder = Path(found).resolve().parent
    else:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                          key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0)
        if not versions:
            raise ServerError("PostgreSQL is not installed: `sudo apt-get install postgresql` "
                              "(make server does it)")
        folder = versions[-1].parent
    return str(folder / "initdb"), str(folder / "pg_ctl")


def _as_db_user(command: List[str]) -> List[str]:
    """PostgreSQL refuses to run as root: then it runs as the `postgres` user."""
    return ["runuser", "-u", DB_OS_USER, "--", *command] if os.geteuid() == 0 else command


def _db_owner() -> Optional[Tuple[int, int]]:
    """The uid and gid PostgreSQL's files need when sweepbook runs as root, else None."""
    if os.geteuid() != 0:
        return None
    try:
        user = pwd.getpwnam(DB_OS_USER)
    except KeyError:
        raise ServerError(f"as root, PostgreSQL runs as the `{DB_OS_USER}` user, which does not "
                          f"exist: install Debian's postgresql package (make server does it)"
                          ) from None
    return user.pw_uid, user.pw_gid


def _owned_by_db_user(path: Path, mode: int, folder: bool = False) -> None:
    """Make `path` (a folder or an empty file) PostgreSQL's, readable by it alone."""
    if folder:
        path.mkdir(exist_ok=True)
    else:
        path.touch(exist_ok=True)
    path.chmod(mode)
    owner = _db_owner()
    if owner:
        os.chown(path, *owner)


def _run_db_tool(command: List[str], what: str, log: Optional[Path] = None) -> None:
    done = subprocess.run(_as_db_user(command), capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise ServerError(f"{what} failed ({Path(command[0]).name} exit {done.returncode}):\n"
                          f"{(done.stdout + done.stderr).strip()}" + (_tail(log) if log else ""))


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL:]
    except OSError:
        return ""
    return f"\nthe end of {log}:\n" + "\n".join(lines)


def _password(folder: Folder) -> str:
    """The database password from its file (libpq's passfile format), made once."""
    if folder.password.exists():
        folder.password.chmod(0o600)  # libpq ignores a passfile others can read
        return folder.password.read_text().strip().rsplit(":", 1)[-1]
    if folder.data.joinpath("PG_VERSION").exists():
        raise ServerError(f"{folder.password} is gone, so nobody can log in to the database "
                          f"cluster in {folder.data}: restore the file, or delete that folder "
                          f"to start over (its runs are lost)")
    password = token_urlsafe(32)  # letters, digits, - and _: nothing libpq escapes
    descriptor = os.open(folder.password, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(f"*:*:*:{DB_USER}:{password}\n")
    return password


def _check_reachable(folder: Folder) -> None:
    """As root, the `postgres` user must be able to reach the data folder."""
    if os.geteuid() != 0:
        return
    done = subprocess.run(_as_db_user(["test", "-w", str(folder.data)]), capture_output=True)
    if done.returncode != 0:
        raise ServerError(f"PostgreSQL runs as the `{DB_OS_USER}` user, which cannot reach "
                          f"{folder.data}: let others pass through every folder above it "
                          f"(chmod o+x), or run sweepbook as a user other than root")


def _initdb(folder: Folder, initdb: str, password: str) -> None:
    """A new database cluster whose superuser has the password; every connection needs it."""
    _owned_by_db_user(folder.data, 0o700, folder=True)
    _check_reachable(folder)
    given = folder.path / ".initdb-password"  # PostgreSQL's user must read it: gone at once
    given.unlink(missing_ok=True)
    try:
        descriptor = os.open(given, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(password + "\n")
        _owned_by_db_user(given, 0o600)
        _run_db_tool([initdb, "-D", str(folder.data), "-U", DB_USER, f"--pwfile={given}",
                      "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale"],
                     "creating the database cluster")
    finally:
        given.unlink(missing_ok=True)
    with open(folder.data / "postgresql.conf", "a") as conf:
        conf.write("\n# sweepbook server (its port and listen_addresses come with each start)\n"
                   "unix_socket_directories = ''  # TCP only: nothing in /var/run/postgresql\n"
                   "password_encryption = 'scram-sha-256'\n")
    (folder.data / "pg_hba.conf").write_text(
        "# sweepbook server: every connection, from wherever it listens, needs the password\n"
        "host all all all scram-sha-256\n")


def _start_postgres(folder: Folder, pg_ctl: str, host: str) -> ServerState:
    port = _free_port(host)
    _owned_by_db_user(folder.postgres_log, 0o600)
    _run_db_tool([pg_ctl, "start", "-D", str(folder.data), "-l", str(folder.postgres_log),
                  "-w", "-t", "120", "-o", f"-p {port} -c listen_addresses={shlex.quote(host)}"],
                 "starting PostgreSQL", folder.postgres_log)
    pid = int((folder.data / "postmaster.pid").read_text().split()[0])
    return ServerState(host, port, pid, psutil.Process(pid).create_time())


def _conninfo(state: ServerState, folder: Folder, database: str) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(host=_local(state.host), port=state.postgres_port, dbname=database,
                         user=DB_USER, passfile=str(folder.password), connect_timeout=10)


def _create_databases(state: ServerState, folder: Folder) -> None:
    import psycopg

    with psycopg.connect(_conninfo(state, folder, "postgres"), autocommit=True) as connection:
        existing = {row[0] for row in connection.execute("SELECT datname FROM pg_database")}
        for name in (MLFLOW_DB, OPTUNA_DB):
            if name not in existing:
                connection.execute(f'CREATE DATABASE "{name}"')


def _stop_postgres(state: ServerState, folder: Folder) -> int:
    """`pg_ctl stop -m fast` as its user; `-m immediate` if it is still there after the grace.
    How many processes ended."""
    processes = postgres_processes(state)
    if not processes:
        return 0
    _, pg_ctl = _binaries()
    for mode in ("fast", "immediate"):
        subprocess.run(_as_db_user([pg_ctl, "stop", "-D", str(folder.data), "-m", mode, "-w",
                                    "-t", str(STOP_GRACE_S)]),
                       capture_output=True, stdin=subprocess.DEVNULL)
        _, alive = psutil.wait_procs(processes, timeout=STOP_GRACE_S)
        if not alive:
            return len(processes)
    raise ServerError(f"PostgreSQL (pid {state.postgres_pid}) did not stop: see "
                      f"{folder.postgres_log}")


# --- MLflow ---

def _bindable(host: str, port: int) -> bool:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            probe.bind((host, port))
            return True
        except OSError:
            return False


def _free_port(host: str) -> int:
    family = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _mlflow_port(host: str, asked: Optional[int]) -> int:
    """`asked`; None: MLflow's usual 5000 when free, else any free port; 0: any free port."""
    try:
        if asked == 0 or (asked is None and not _bindable(host, MLFLOW_PORT)):
            return _free_port(host)
        port = MLFLOW_PORT if asked is None else asked
        if not _bindable(host, port):
            raise ServerError(f"port {port} on {host} is in use: choose another with --port, "
                              f"or --port 0 for any free one")
        return port
    except (socket.gaierror, OverflowError) as error:
        raise ServerError(f"cannot listen on {host} port {asked}: {error}") from None


def _start_mlflow(state: ServerState, folder: Folder) -> subprocess.Popen:
    """`mlflow server` in its own session (stop ends its process group), one worker, artifacts
    proxied from the server's folder; its backend's URL in the environment."""
    env = {**os.environ, BACKEND_ENV: database_url(state, folder, MLFLOW_DB),
           JOBS_ENV: os.environ.get(JOBS_ENV, "false"),
           TELEMETRY_ENV: os.environ.get(TELEMETRY_ENV, "true")}
    command = [sys.executable, "-m", "mlflow", "server", "--host", state.host,
               "--port", str(state.mlflow_port), "--workers", "1",
               "--artifacts-destination", str(folder.artifacts),
               "--uvicorn-opts", "--no-access-log"]  # one line per request: a log without end
    with open(folder.mlflow_log, "ab") as log:
        return subprocess.Popen(command, cwd=folder.path, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def healthy(uri: str) -> bool:
    """GET <uri>/health answers 200 (proxies bypassed: the server may be on this machine)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{uri}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _wait_healthy(server: subprocess.Popen, state: ServerState, folder: Folder) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise ServerError(f"mlflow server ended with exit code {server.returncode}"
                              + _tail(folder.mlflow_log))
        if healthy(state.uri):
            return
        time.sleep(0.25)
    raise ServerError(f"mlflow server was not healthy after {HEALTH_TIMEOUT_S} s"
                      + _tail(folder.mlflow_log))


def _stop_mlflow(state: ServerState) -> int:
    """SIGTERM to MLflow's processes, SIGKILL to those left after the grace; how many ended."""
    processes = mlflow_processes(state)
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for process in processes:
            try:
                process.send_signal(signum)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(processes, timeout=STOP_GRACE_S)
        if not alive:
            return len(processes)
    raise ServerError(f"MLflow's processes {[p.pid for p in alive]} did not end")


# --- start, stop ---

def _prepare(folder: Folder) -> None:
    """The server's folder: others may pass through it (PostgreSQL's user, when run as root),
    not list it."""
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.path.chmod(0o711)
    folder.artifacts.mkdir(exist_ok=True)


def _end(state: ServerState, folder: Folder) -> Tuple[int, int]:
    """End what `state` says runs, MLflow first; the state forgotten. Processes ended."""
    ended = _stop_mlflow(state), _stop_postgres(state, folder)
    folder.state.unlink(missing_ok=True)
    return ended


class Interrupted(Exception):
    """SIGTERM or SIGHUP reached a start, which ended what it had started; args[0]: the signal."""


def _interrupt(signum, _frame):
    raise Interrupted(signum)


def _start_servers(folder: Folder, host: str, mlflow_port: int) -> Tuple[ServerState, Timings]:
    """PostgreSQL (its cluster made the first time), its databases, then MLflow, healthy."""
    initdb, pg_ctl = _binaries()
    password = _password(folder)
    began, init = time.monotonic(), None
    if not folder.data.joinpath("PG_VERSION").exists():
        print("creating the database cluster (once)...", file=sys.stderr, flush=True)
        _initdb(folder, initdb, password)
        init = time.monotonic() - began
    began = time.monotonic()
    state = _start_postgres(folder, pg_ctl, host)
    try:
        _write_state(folder, state)  # from here on, `stop` can end it
        _create_databases(state, folder)
        postgres_s = time.monotonic() - began
        print("starting mlflow server (a fresh database takes ~15 s)...", file=sys.stderr,
              flush=True)
        began = time.monotonic()
        state.mlflow_port = mlflow_port
        server = _start_mlflow(state, folder)
        state.mlflow_pid = server.pid
        state.mlflow_started = psutil.Process(server.pid).create_time()
        _write_state(folder, state)
        _wait_healthy(server, state, folder)
    except BaseException:  # a failure, Ctrl-C, or Interrupted: nothing left running
        _end(state, folder)
        raise
    return state, Timings(init, postgres_s, time.monotonic() - began)


def start(host: str = "127.0.0.1", port: Optional[int] = None,
          root: Optional[Path] = None) -> Tuple[ServerState, Optional[Timings]]:
    """Start PostgreSQL and MLflow (a second start finds them: no timings then); the state.
    SIGTERM or SIGHUP meanwhile ends what it started (Interrupted)."""
    folder = Folder.of_project(root)
    _prepare(folder)
    with signal_handlers(_interrupt, (signal.SIGTERM, signal.SIGHUP)), \
            locks.exclusive(folder.lock, wait=True):
        earlier = read_state(folder)
        if earlier is not None and running(earlier):
            return earlier, None
        if earlier is not None:  # what is left of one that ended partly
            _end(earlier, folder)
        return _start_servers(folder, host, _mlflow_port(host, port))


def stop(root: Optional[Path] = None) -> Optional[Tuple[ServerState, Tuple[int, int]]]:
    """End what `start` started; its state and the processes ended, or None if none was."""
    folder = Folder.of_project(root)
    if not folder.path.is_dir():
        return None
    with locks.exclusive(folder.lock, wait=True):
        state = read_state(folder)
        if state is None:
            return None
        return state, _end(state, folder)


# --- the command ---

def _describe(state: ServerState, folder: Folder) -> List[str]:
    """What runs where, the URIs without the password."""
    mlflow, postgres = mlflow_processes(state), postgres_processes(state)
    listening = [] if state.host == _local(state.host) else [
        f"  listening   on {state.host}: from elsewhere http://{socket.gethostname()}:"
        f"{state.mlflow_port}"]
    return [
        *listening,
        f"  MLflow      pid {state.mlflow_pid}, {len(mlflow)} processes, log {folder.mlflow_log}",
        f"  PostgreSQL  pid {state.postgres_pid}, {len(postgres)} processes, "
        f"{_url_host(_local(state.host))}:{state.postgres_port}, log {folder.postgres_log}",
        f"  memory      {memory_mib(mlflow + postgres):.0f} MiB (MLflow "
        f"{memory_mib(mlflow):.0f}, PostgreSQL {memory_mib(postgres):.0f})",
        f"  data folder {folder.path} (artifacts/, postgres/)",
        f"  databases   (the password stays in {folder.password}, mode 0600)",
        f"    MLflow's: {database_url(state, folder, MLFLOW_DB)}",
        f"    studies:  {database_url(state, folder, OPTUNA_DB)}",
    ]


def _next_steps(uri: str) -> List[str]:
    return [f"use it: tracking=server  (sweepbook sweep notebooks/train.ipynb model=cnn,mlp "
            f"tracking=server)",
            f"    or: export MLFLOW_TRACKING_URI={uri}",
            "stop it: sweepbook server stop  (status: sweepbook server status)"]


def _cmd_start(host: str, port: Optional[int]) -> int:
    state, timings = start(host, port)
    folder = Folder.of_project()
    if timings is None:
        print(f"tracking server already running at {state.uri} (MLflow pid {state.mlflow_pid}, "
              f"PostgreSQL pid {state.postgres_pid})")
        return 0
    init = f"database cluster made in {timings.init:.1f} s, " if timings.init else ""
    print(f"PostgreSQL: {init}started in {timings.postgres:.1f} s; MLflow healthy in "
          f"{timings.mlflow:.1f} s")
    print("\n".join([f"tracking server running at {state.uri}", *_describe(state, folder),
                     *_next_steps(state.uri)]))
    return 0


def _cmd_stop() -> int:
    began = time.monotonic()
    stopped = stop()
    if stopped is None:
        print("no tracking server was running for this project")
        return 0
    state, (mlflow, postgres) = stopped
    where = f" at {state.uri}" if state.mlflow_port else ""
    print(f"stopped the tracking server{where} in {time.monotonic() - began:.1f} s: "
          f"MLflow ({mlflow} processes), PostgreSQL ({postgres} processes); its runs stay in "
          f"{Folder.of_project().path}")
    return 0


def _cmd_status() -> int:
    folder = Folder.of_project()
    state = read_state(folder)
    if state is None:
        print(f"no tracking server running for this project ({folder.path}); start one: "
              f"sweepbook server start")
        return EXIT_NOT_RUNNING
    if not running(state) or not healthy(state.uri):
        ended = [name for name, pid, started in (
            ("MLflow", state.mlflow_pid, state.mlflow_started),
            ("PostgreSQL", state.postgres_pid, state.postgres_started))
            if _process(pid, started) is None]
        print(f"tracking server not running as it should: {' and '.join(ended) or 'MLflow'} "
              f"{'has' if len(ended) < 2 else 'have'} ended or does not answer; "
              f"`sweepbook server stop` ends what is left, then start it again")
        print("\n".join(_describe(state, folder)))
        return EXIT_NOT_RUNNING
    print("\n".join([f"tracking server running at {state.uri}", *_describe(state, folder)]))
    return 0


def command(action: str, host: str = "127.0.0.1", port: Optional[int] = None) -> int:
    """`sweepbook server ACTION`: its output printed, its exit code returned."""
    if action == "start":
        try:
            return _cmd_start(host, port)
        except (KeyboardInterrupt, Interrupted) as stopped:
            signum = stopped.args[0] if isinstance(stopped, Interrupted) else signal.SIGINT
            print("sweepbook: start interrupted: what it had started is stopped",
                  file=sys.stderr)
            return 128 + signum
    if action == "stop":
        return _cmd_stop()
    return _cmd_status()
