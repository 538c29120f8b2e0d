"""Joining a running, token-authenticated Ray cluster (``ray start --head``, Ray's default once a
token exists): ``fedopt run --address auto|HOST:PORT|ray://HOST:PORT`` and ``engine.address``
give the local table; without the cluster's token the command ends in one line saying what to set.

The end-to-end tests start a head of their own (own ``HOME`` holding its token, own temp dir,
free ports) and stop it by its own processes; they never touch another Ray instance.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import ray  # noqa: F401  (a dependency: a missing ray is a failure, not a skip)

from fedopt.cli import main  # noqa: E402
from fedopt.engines.ray.cluster import ClusterAuth, check_address, cluster_auth, join_error  # noqa: E402
from fedopt.experiment.ray_sweep import connect  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")
REMOTE = "203.0.113.7"  # TEST-NET-3 (RFC 5737): never an address of this machine

#: 3 tiny runs: a round-based, an event-based (Poisson clocks) and a federated algorithm.
CONFIG = {
    "name": "cluster",
    "problem": {"name": "quadratic", "n": 6, "d": 3},
    "topology": ["cycle"],
    "algorithms": [
        {"name": "dgd", "params": {"lr": 0.1}},
        {"name": "gossip_sgd", "params": {"lr": 0.1}},
        {"name": "fedavg", "params": {"lr": 0.1, "local_steps": 2}},
    ],
    "seeds": [0],
    "stop": {"time": 5},
    "record": {"every": 1},
    "resources": {"num_cpus": 1},
}


# ---- which token a driver presents --------------------------------------------------


def _home(tmp_path: Path, token: str | None = "t0ken") -> Path:
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True, exist_ok=True)
    if token is not None:
        (home / ".ray" / "auth_token").write_text(token)
    return home


@pytest.mark.parametrize("address", ["auto", "127.0.0.1:6379", "localhost:6379", "ray://127.0.0.1:10001",
                                     "[::1]:6379", "0.0.0.0:6379"])
def test_default_token_is_presented_to_a_cluster_on_this_machine(tmp_path: Path, address: str) -> None:
    home = _home(tmp_path)
    auth = cluster_auth(address, {}, home)
    assert auth == ClusterAuth(True, str(home / ".ray" / "auth_token"), None)


@pytest.mark.parametrize("address,environ", [
    (f"{REMOTE}:6379", {}),
    (f"ray://{REMOTE}:10001", {}),
    ("auto", {"RAY_ADDRESS": f"{REMOTE}:6379"}),  # auto is RAY_ADDRESS when that is set
])
def test_default_token_is_never_sent_to_another_machine(tmp_path: Path, address: str,
                                                        environ: dict[str, str]) -> None:
    assert cluster_auth(address, environ, _home(tmp_path)) == ClusterAuth(False, None, None)


def test_a_named_token_is_presented_to_any_cluster(tmp_path: Path) -> None:
    home = _home(tmp_path, token=None)
    env = {"RAY_AUTH_TOKEN": "abc"}
    assert cluster_auth(f"{REMOTE}:6379", env, home) == ClusterAuth(True, "RAY_AUTH_TOKEN", None)
    path = tmp_path / "cluster_token"
    path.write_text("abc")
    env = {"RAY_AUTH_TOKEN_PATH": str(path)}
    assert cluster_auth(f"ray://{REMOTE}:10001", env, home) == ClusterAuth(True, f"RAY_AUTH_TOKEN_PATH ({path})", None)
    # RAY_AUTH_TOKEN comes first, as in Ray
    both = {"RAY_AUTH_TOKEN": "abc", "RAY_AUTH_TOKEN_PATH": str(path)}
    assert cluster_auth("auto", both, _home(tmp_path / "default")).source == "RAY_AUTH_TOKEN"


def test_no_token_anywhere_presents_none(tmp_path: Path) -> None:
    assert cluster_auth("127.0.0.1:6379", {}, _home(tmp_path, token=None)) == ClusterAuth(False, None, None)


def test_auth_mode_set_by_the_user_is_respected(tmp_path: Path) -> None:
    home = _home(tmp_path)
    assert cluster_auth("127.0.0.1:6379", {"RAY_AUTH_MODE": "disabled"}, home) == ClusterAuth(False, None, "disabled")
    # token mode: Ray presents the default token wherever the user points it
    assert cluster_auth(f"{REMOTE}:6379", {"RAY_AUTH_MODE": "token"}, home).token


def test_token_errors_say_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^RAY_AUTH_TOKEN_PATH=\S*nowhere: no such file; set RAY_AUTH_TOKEN_PATH"):
        cluster_auth("127.0.0.1:6379", {"RAY_AUTH_TOKEN_PATH": str(tmp_path / "nowhere")}, _home(tmp_path))
    with pytest.raises(ValueError, match=r"^RAY_AUTH_MODE=token but no token was found; set RAY_AUTH_TOKEN_PATH "
                                         r"to a file that holds the cluster's token .* or RAY_AUTH_TOKEN"):
        cluster_auth("127.0.0.1:6379", {"RAY_AUTH_MODE": "token"}, _home(tmp_path / "empty", token=None))


def test_rejected_join_messages(tmp_path: Path) -> None:
    # the chain ray.init raises when the GCS turns a driver down (Ray 2.60)
    try:
        try:
            raise RuntimeError("Failed to connect to GCS. Last connection error: Traceback (most recent call last):\n"
                               "ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken: Authentication "
                               "token is missing or incorrect.")
        except RuntimeError as inner:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from inner
    except ConnectionError as exc:
        rejected = exc
    none = join_error("10.0.0.1:6379", rejected, ClusterAuth(False, None, None))
    assert none.startswith("--address: cannot join the Ray cluster at '10.0.0.1:6379': it requires an authentication "
                           "token and none was found; set RAY_AUTH_TOKEN_PATH to a file")
    wrong = join_error("10.0.0.1:6379", rejected, ClusterAuth(True, "RAY_AUTH_TOKEN", None), key="engine.address")
    assert wrong.startswith("engine.address: cannot join the Ray cluster at '10.0.0.1:6379': it rejected the token "
                            "from RAY_AUTH_TOKEN; set RAY_AUTH_TOKEN_PATH")
    off = join_error("10.0.0.1:6379", rejected, ClusterAuth(False, None, "disabled"))
    assert "RAY_AUTH_MODE=disabled sends none; unset RAY_AUTH_MODE" in off
    other = join_error("ray://10.0.0.1:10001", ConnectionError("ray client connection timeout"),
                       ClusterAuth(False, None, None))
    assert other.startswith("--address: cannot join the Ray cluster at 'ray://10.0.0.1:10001': ray client connection "
                            "timeout (if the cluster uses token authentication, set RAY_AUTH_TOKEN_PATH")
    off_other = join_error("ray://10.0.0.1:10001", ConnectionError("ray client connection timeout"),
                           ClusterAuth(False, None, "disabled"))
    assert off_other.endswith("(if the cluster uses token authentication, unset RAY_AUTH_MODE (or set it to token) "
                              "and set RAY_AUTH_TOKEN_PATH to a file that holds the cluster's token (`ray "
                              "get-auth-token` on its head node prints it) or RAY_AUTH_TOKEN to the token itself)")
    assert all("\n" not in m for m in (none, wrong, off, other, off_other))


@pytest.mark.parametrize("bad", ["foo", "6379", "host:", "host:port", "a:1:2", "", "http://127.0.0.1:8265",
                                 "ray://head", "ray://"])
def test_bad_address_names_the_key_and_the_forms(bad: str) -> None:
    with pytest.raises(ValueError, match=r"^--address: .* is not auto, HOST:PORT or ray://HOST:PORT$"):
        check_address(bad)
    with pytest.raises(ValueError, match=r"^--address: .* is not auto, HOST:PORT or ray://HOST:PORT$"):
        connect(bad)  # before Ray is touched


@pytest.mark.parametrize("good", ["auto", "10.0.0.1:6379", "head-node:6379", "[::1]:6379", "ray://10.0.0.1:10001"])
def test_good_addresses(good: str) -> None:
    assert check_address(good) == good


# ---- end to end, on a head of this test's own --------------------------------------------


def _proc_table() -> dict[int, tuple[str, int, int]]:
    """pid -> (state, ppid, process group) of every process, from /proc."""
    table = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        state, ppid, pgrp = stat[stat.rindex(")") + 2:].split()[:3]
        table[int(d.name)] = (state, int(ppid), int(pgrp))
    return table


def _tree(pgid: int, known: set[int]) -> set[int]:
    """The processes of group ``pgid``, ``known`` ones, and all their descendants (Ray's workers
    run in process groups of their own, as children of the raylet)."""
    table = _proc_table()
    found = {p for p, (_, _, g) in table.items() if g == pgid} | {p for p in known if p in table}
    while True:
        more = {p for p, (_, pp, _) in table.items() if pp in found} - found
        if not more:
            return found
        found |= more


def _alive(pids: set[int]) -> set[int]:
    table = _proc_table()
    return {p for p in pids if p in table and table[p][0] != "Z"}


def _stop_head(pgid: int) -> set[int]:
    """Stop every process the head started: freeze them (no new workers), then kill them.
    Returns the processes that are still alive (none, normally)."""
    pids: set[int] = set()
    for _ in range(20):  # freeze until no new process appears
        more = _tree(pgid, pids) - pids
        if not more:
            break
        for p in more:
            try:
                os.kill(p, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        pids |= more
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.time() + 20
    while _alive(pids) and time.time() < deadline:
        time.sleep(0.1)
    return _alive(pids)


def _free_ports(k: int) -> list[int]:
    socks = [socket.socket() for _ in range(k)]
    try:
        for s in socks:
            s.bind(("", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Head:
    address: str  # 127.0.0.1:PORT
    advertised: str  # the address the head advertises (this machine's IP):PORT
    client: str  # ray://127.0.0.1:PORT
    env: dict[str, str]  # a user's shell on this machine: HOME holds the token, nothing else is set


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARS}
    env.update(HOME=str(home), RAY_DEDUP_LOGS="0", RAY_USAGE_STATS_ENABLED="0",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return env


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.exists():
        ray_cli = Path(shutil.which("ray") or "ray")
    home = _home(tmp_path_factory.mktemp("head"), token=secrets.token_hex(32))
    temp_dir = tempfile.mkdtemp(prefix="fedopt-ray-")  # short: Ray's socket paths live under it
    gcs, client, dashboard, agent_http, agent_grpc, runtime_env, metrics, node_manager, object_manager = _free_ports(9)
    env = _env(home)
    log = Path(temp_dir) / "ray_start.log"
    cmd = [str(ray_cli), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
           "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false", "--disable-usage-stats",
           "--temp-dir", temp_dir, "--ray-client-server-port", str(client), "--dashboard-port", str(dashboard),
           "--dashboard-agent-listen-port", str(agent_http), "--dashboard-agent-grpc-port", str(agent_grpc),
           "--runtime-env-agent-port", str(runtime_env), "--metrics-export-port", str(metrics),
           "--node-manager-port", str(node_manager), "--object-manager-port", str(object_manager)]
    with open(log, "wb") as out:  # not a pipe: the head's daemons must not hold it open
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            rc = proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            rc = None
        started = log.read_text(errors="replace")
        assert rc == 0, f"ray start failed ({rc}):\n{started[-3000:]}"
        assert "Token authentication is enabled" in started  # the head asks every driver for its token
        advertised = (Path(temp_dir) / "ray_current_cluster").read_text().strip()
        yield Head(f"127.0.0.1:{gcs}", advertised, f"ray://127.0.0.1:{client}", env)
    finally:
        left = _stop_head(proc.pid)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"the head's processes {sorted(left)} outlived it"


def _fedopt(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen([sys.executable, "-m", "fedopt.cli", "run", *args, "--no-progress"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"fedopt run {' '.join(args)} did not finish in {timeout} s:\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _same_table(got: pd.DataFrame, want: pd.DataFrame, what: str) -> None:
    keys = ["algorithm", "topology", "seed", "time"]
    got, want = got.sort_values(keys, ignore_index=True), want.sort_values(keys, ignore_index=True)
    assert len(got) == len(want) and list(got.columns) == list(want.columns), what
    assert (got["status"] == "ok").all(), (what, got["message"].tolist())
    for c in got.columns:
        if c in ("wall_s", "run_id"):
            continue
        if pd.api.types.is_numeric_dtype(want[c]):
            a, b = got[c].to_numpy(dtype=float, na_value=np.nan), want[c].to_numpy(dtype=float, na_value=np.nan)
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=f"{what}: {c}")
        else:
            assert got[c].astype(str).tolist() == want[c].astype(str).tolist(), (what, c)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = tmp_path_factory.mktemp("config") / "cluster.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    return cfg


@pytest.fixture(scope="module")
def local_table(config: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("local")
    assert main(["run", str(config), "--out", str(out), "--no-progress"]) == 0  # in this process, no Ray
    table = pd.read_parquet(out / "results.parquet")
    assert len(table) and table["algorithm"].nunique() == 3
    return table


# The Ray Client form first: its join fails more often ("Initialization failure from server",
# Ray 2.60) after other sweeps on the same head; cause not isolated, a failed start is retried.
@pytest.mark.parametrize("form", ["ray://HOST:PORT", "HOST:PORT", "auto"])
def test_sweep_on_a_token_cluster_equals_the_local_sweep(head: Head, config: Path, local_table: pd.DataFrame,
                                                        tmp_path: Path, form: str) -> None:
    address, env = {
        "HOST:PORT": (head.address, head.env),
        # `--address auto` in a job on the head node: Ray resolves it through RAY_ADDRESS
        "auto": ("auto", {**head.env, "RAY_ADDRESS": head.advertised}),
        "ray://HOST:PORT": (head.client, head.env),  # Ray Client
    }[form]
    out = tmp_path / "out"
    done = _fedopt(env, str(config), "--out", str(out), "--address", address)
    for _ in range(2):  # Ray Client's per-connection server can fail to start on a loaded 2-core machine
        if done.returncode == 0 or "Initialization failure from server" not in done.stderr:
            break
        time.sleep(5)
        done = _fedopt(env, str(config), "--out", str(out), "--address", address, "--overwrite")
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["execution"]["ray_tasks"] and manifest["execution"]["address"] == address
    _same_table(pd.read_parquet(out / "results.parquet"), local_table, form)


def test_ray_engine_joins_a_token_cluster(head: Head, local_table: pd.DataFrame, tmp_path: Path) -> None:
    # no --address: the runs go one after the other in the driver, whose ray engine joins the cluster
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(yaml.safe_dump({**CONFIG, "engine": {"name": "ray", "address": head.address, "num_actors": 2}}))
    done = _fedopt(head.env, str(cfg), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-3000:]
    _same_table(pd.read_parquet(tmp_path / "out" / "results.parquet"), local_table, "engine.address")


def test_without_the_clusters_token_one_line_says_what_to_set(head: Head, config: Path, tmp_path: Path) -> None:
    quick = {"RAY_gcs_server_port_wait_time_s": "2"}  # Ray retries a rejected connection for 20 s by default
    wrong = tmp_path / "wrong_token"
    wrong.write_text(secrets.token_hex(32))
    cases = {
        "none was found": {**head.env, **quick, "HOME": str(_home(tmp_path / "empty", token=None))},
        f"it rejected the token from RAY_AUTH_TOKEN_PATH ({wrong})": {**head.env, **quick,
                                                                    "RAY_AUTH_TOKEN_PATH": str(wrong)},
    }
    for why, env in cases.items():
        done = _fedopt(env, str(config), "--out", str(tmp_path / "out"), "--address", head.address, timeout=120)
        assert done.returncode == 2, done.stderr[-3000:]
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith(f"fedopt: error: --address: cannot join the Ray cluster at '{head.address}': "), last
        assert why in last, last
        assert last.endswith("set RAY_AUTH_TOKEN_PATH to a file that holds the cluster's token (`ray get-auth-token` "
                             "on its head node prints it) or RAY_AUTH_TOKEN to the token itself"), last
        assert not (tmp_path / "out" / "results.parquet").exists()
