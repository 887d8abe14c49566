"""A standalone Spark cluster on 127.0.0.1 (one master, one worker) runs the cache build through spark-submit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from recsys.cache.build import build_cache
from recsys.cache.lookup import AudienceLookup, audience_path
from recsys.cache.manifest import read_manifest

from _logs import random_log

pyspark = pytest.importorskip(
    "pyspark", reason="pyspark is part of the project's `spark` extra (make setup installs it)"
)

pytestmark = [pytest.mark.spark, pytest.mark.server]

HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0
SUBMIT_TIMEOUT_S = 600.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until something listens on HOST:port; fail with the daemon's log if it exits or times out."""
    end = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"spark daemon exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.5)
    pytest.fail(f"nothing listened on {HOST}:{port} after {START_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}")


def spark_env(tmp: Path) -> dict[str, str]:
    """Environment of the daemons and of spark-submit: loopback only, logs and work dirs under `tmp`."""
    home = str(Path(pyspark.__file__).parent)
    return dict(
        os.environ,
        SPARK_HOME=home,
        SPARK_LOCAL_IP=HOST,
        SPARK_LOG_DIR=str(tmp / "logs"),
        SPARK_WORKER_DIR=str(tmp / "work"),
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        OPENBLAS_NUM_THREADS="1",
    )


def start(cls: str, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a Spark daemon class through the distribution's bin/spark-class, output into `log`."""
    spark_class = Path(env["SPARK_HOME"]) / "bin" / "spark-class"
    with log.open("wb") as fh:
        return subprocess.Popen([str(spark_class), cls, *args], env=env, stdout=fh, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate one daemon this test started (kill it if it does not stop)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A master and one worker (1 core, 1 GiB) on 127.0.0.1; yields the master URL and the environment."""
    tmp = tmp_path_factory.mktemp("spark-cluster")
    env = spark_env(tmp)
    port, ui = free_port(), free_port()
    master = start(
        "org.apache.spark.deploy.master.Master",
        ["--host", HOST, "--port", str(port), "--webui-port", str(ui)],
        env,
        tmp / "master.log",
    )
    procs = [master]
    try:
        wait_for_port(port, master, tmp / "master.log")
        url = f"spark://{HOST}:{port}"
        worker_port = free_port()
        worker = start(
            "org.apache.spark.deploy.worker.Worker",
            [
                url,
                "--host",
                HOST,
                "--port",
                str(worker_port),
                "--webui-port",
                str(free_port()),
                "--cores",
                "1",
                "--memory",
                "1g",
                "--work-dir",
                str(tmp / "work"),
            ],
            env,
            tmp / "worker.log",
        )
        procs.append(worker)
        wait_for_port(worker_port, worker, tmp / "worker.log")
        yield url, env
    finally:
        for proc in reversed(procs):
            stop(proc)


def test_spark_submit_on_a_standalone_cluster_builds_the_same_cache(
    cluster: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, env = cluster
    log = random_log(n_rows=1200, n_users=120, n_products=30, seed=12, str_ids=True)
    prepared = tmp_path / "interactions.parquet"
    log.to_parquet(prepared)
    script = Path(__file__).resolve().parents[1] / "recsys" / "engines" / "spark" / "submit.py"
    spark_submit = Path(env["SPARK_HOME"]) / "bin" / "spark-submit"
    cmd = [
        str(spark_submit),
        "--master",
        url,
        "--driver-memory",
        "1g",
        "--executor-memory",
        "1g",
        "--total-executor-cores",
        "1",
        "--conf",
        f"spark.driver.host={HOST}",
        "--conf",
        f"spark.driver.bindAddress={HOST}",
        str(script),
        "--ranker",
        "activity",
        "--uncapped",
        "--input",
        prepared.as_uri(),
        "--output",
        str(tmp_path / "cache"),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=SUBMIT_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-4000:]
    manifest = read_manifest(tmp_path / "cache")
    assert manifest.engine.name == "spark" and manifest.engine.master == url  # ran on the cluster, not local
    assert manifest.fingerprint.algorithm == "sha256-file"  # a file:// URI is a local file
    params = {"seed": manifest.ranker_params["seed"], "features": manifest.ranker_params["features"]}
    build_cache(log, "activity", params, tmp_path / "pandas", n=manifest.n)
    got = pd.read_parquet(audience_path(tmp_path / "cache"))
    want = pd.read_parquet(audience_path(tmp_path / "pandas"))
    for col in ("product_id", "rank", "customer_id"):
        assert got[col].tolist() == want[col].tolist()
    pd.testing.assert_series_equal(got["score"], want["score"], rtol=1e-6, atol=1e-7)
    lookup = AudienceLookup.open(tmp_path / "cache")
    assert lookup.id_kind == "str" and len(lookup) == log["product_id"].nunique()
