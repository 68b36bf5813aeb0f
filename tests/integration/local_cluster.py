"""Real Ray heads (optionally autoscaling) and an MLflow server on 127.0.0.1, started and stopped by a test.

Everything runs in its own process session with its own ports and temp dir, and teardown kills
exactly that session: never `ray stop`, which would end every Ray on the machine.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent  # the venv's `ray`, `mlflow` and `raygrid` commands


_HANDED_OUT: set[int] = set()
# Ports for the processes the tests start: above Ray's worker ports (10002-19999), below the kernel's
# ephemeral range (32768-), which Ray's own randomly placed services and every outgoing connection use.
PORTS_FROM, PORTS_TO = 20000, 32000


def free_port() -> int:
    """A port free now and never handed out before by this process.

    Not bind(0): the kernel may give the same free port to two binds in a row once the first socket
    is closed, and `ray start` refuses two components on one port (seen: client server and
    runtime-env agent).
    """
    for _ in range(10_000):
        port = random.randrange(PORTS_FROM, PORTS_TO)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # taken
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free port in {PORTS_FROM}-{PORTS_TO - 1}")


def fake_autoscaling_config(gcs_port: int, worker_types: dict, head: dict, idle_timeout_minutes: float = 1.0) -> dict:
    """A config for Ray's fake multi-node provider: worker nodes are local raylets it starts on demand."""
    return {"cluster_name": "raygrid-test", "max_workers": sum(t["max_workers"] for t in worker_types.values()),
            "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                         "disable_launch_config_check": True, "gcs_address": f"127.0.0.1:{gcs_port}"},
            "available_node_types": {"ray.head.default": {"resources": head, "node_config": {}, "max_workers": 0},
                                     **{name: {"node_config": {}, **spec} for name, spec in worker_types.items()}},
            "head_node_type": "ray.head.default", "auth": {}, "upscaling_speed": 1.0, "idle_timeout_minutes": idle_timeout_minutes,
            "docker": {}, "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
            "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
            "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
            "rsync_exclude": [], "rsync_filter": []}


class RayHead:
    """`ray start --head --block` with its own ports and temp dir (Ray picks the node address)."""

    def __init__(self, root: Path, cpus: float = 2, autoscaling: dict | None = None, dashboard: bool = False,
                 token: str | None = None):
        self.root, self.port, self.token = root, free_port(), token
        self.dashboard_port = free_port() if dashboard else None
        self.config_path = None
        root.mkdir(parents=True, exist_ok=True)
        # Ray's Unix sockets live under the temp dir, and their paths may not exceed 107 bytes.
        self.temp_dir = tempfile.mkdtemp(prefix="rg-")
        self.temp_dirs = [self.temp_dir]  # the head's, then each added node's
        cmd = [str(BIN / "ray"), "start", "--head", f"--port={self.port}", f"--ray-client-server-port={free_port()}",
               *self._node_flags(cpus, self.temp_dir)]
        cmd += ([f"--dashboard-port={self.dashboard_port}", "--dashboard-host=127.0.0.1"] if dashboard
                else ["--include-dashboard=false"])
        # Token auth on with the given token, else explicitly off: `ray start` would otherwise turn it
        # on whenever ~/.ray/auth_token exists (a local ray.init may have written one).
        # RAY_ADDRESS: what a real node's workers find in /tmp/ray/ray_current_cluster (written by
        # `ray start`, but here into this head's own temp dir), so Ray's State API asks this cluster.
        self.env = env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **auth_env(token),
                          "RAY_ADDRESS": self.address}
        self.workers: list[subprocess.Popen] = []
        if autoscaling is not None:
            self.config_path = root / "autoscaling.yaml"
            self.config_path.write_text(json.dumps(fake_autoscaling_config(self.port, **autoscaling)))
            cmd.append(f"--autoscaling-config={self.config_path}")
            env.update(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
        self.log = open(root / "head.log", "w")
        self.proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_up()

    def _node_flags(self, cpus: float, temp_dir: str) -> list[str]:
        """A node's temp dir and its own free ports."""
        return ["--block", f"--temp-dir={temp_dir}", f"--num-cpus={cpus}",
                "--object-store-memory=200000000",
                *(f"--{flag}={free_port()}" for flag in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                         "metrics-export-port", "runtime-env-agent-port",
                                                         "node-manager-port", "object-manager-port"))]

    def add_worker(self, cpus: float) -> None:
        """Another node joining this head (`ray start --address`), as a second machine would."""
        log = open(self.root / f"worker{len(self.workers)}.log", "w")
        # A temp dir of its own, as a second machine has: a shared one would be one runtime-env
        # cache for two nodes, and the worker node's agent deletes the job's --working-dir copy
        # under the head's running job (seen: the job's driver died with FileNotFoundError).
        self.temp_dirs.append(tempfile.mkdtemp(prefix="rg-"))
        self.workers.append(subprocess.Popen(
            [str(BIN / "ray"), "start", f"--address={self.address}", *self._node_flags(cpus, self.temp_dirs[-1])],
            env=self.env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _wait_up(self, timeout: float = 90) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited: {(self.root / 'head.log').read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                if self.dashboard_port is None or _http_ok(f"{self.dashboard_url}/api/version"):
                    return
            time.sleep(1)
        raise TimeoutError(f"Ray head on port {self.port} did not come up")

    def active_worker_nodes(self) -> int:
        """Worker nodes the autoscaler reports as active (`ray status`; the head is not counted)."""
        out = subprocess.run([str(BIN / "ray"), "status", f"--address={self.address}"], env=self.env,
                             capture_output=True, text=True, timeout=60).stdout
        active = out.split("Active:", 1)[-1].split("Pending:", 1)[0] if "Active:" in out else ""
        # Lines such as ` 2 cpu1`: a count and a node type; the head's type is ray.head.default.
        return sum(int(line.split()[0]) for line in active.splitlines()
                   if line.strip() and line.split()[0].isdigit() and "ray.head" not in line)

    def wait_for_worker_nodes(self, count: int, timeout: float) -> int:
        """Poll `ray status` until `count` worker nodes are active or `timeout` passes; the last count."""
        deadline = time.time() + timeout
        while (now := self.active_worker_nodes()) != count and time.time() < deadline:
            time.sleep(3)
        return now

    def stop(self) -> None:
        for worker in self.workers:
            kill_session(worker)
        kill_session(self.proc)
        self.log.close()
        if not os.environ.get("RAYGRID_KEEP_RAY_LOGS"):  # set it to read Ray's logs after a failure
            for folder in self.temp_dirs:
                shutil.rmtree(folder, ignore_errors=True)


def auth_env(token: str | None) -> dict[str, str]:
    """The environment a Ray process needs for a cluster with this token (None: auth disabled)."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token} if token else {"RAY_AUTH_MODE": "disabled"}


class MlflowServer:
    """`mlflow server` on 127.0.0.1 with a SQLite backend, as a team's tracking server would run."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self.root, self.port = root, free_port()  # root: its database and artifacts
        cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{root / 'server.db'}", "--artifacts-destination", str(root / "art")]
        self.log = open(root / "mlflow.log", "w")
        # Without MLflow's job runner (huey consumers for its GenAI jobs, which raygrid never submits):
        # they polled away ~35 s of CPU over a test session.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.proc = subprocess.Popen(cmd, start_new_session=True, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 300  # gunicorn, migrations and job backends: slow on a busy 2-core box
        while not _http_ok(f"{self.uri}/health"):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"mlflow server did not start: {(root / 'mlflow.log').read_text()[-2000:]}")
            time.sleep(1)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        kill_session(self.proc)
        self.log.close()


def kill_session(proc: subprocess.Popen) -> None:
    """End `proc` and everything it started (same session), SIGTERM first, then SIGKILL."""
    family = [proc.pid]
    with contextlib.suppress(psutil.NoSuchProcess):
        family += [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        for pid in family:  # children that left the session (Ray's raylets keep it, but be sure)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(3)
            break


def _http_ok(url: str) -> bool:
    """Whether a server answers at `url` (a 401 from a token-protected dashboard counts: it is up)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except urllib.error.HTTPError as err:
        return err.code == 401
    except OSError:
        return False
