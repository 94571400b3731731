"""Issue 13 deploy/: what cannot run here (images cannot be pulled) is validated
statically — the Kubernetes manifests against the API schemas that kubernetes-validate
ships, compose.yaml against the Compose specification's schema that check-jsonschema
ships (no network) — and deploy/local-cluster.sh is run for real: a Redis Cluster and
3 nodes on this machine, one room spanning the nodes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from roomserver.auth import DEV_APP, mint_token
from roomserver.client import RoomClient
from roomserver.configload import read_file
from tests.ports import free_port_run
from tests.server_fixtures import Recorder

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.32.0"  # a current release (the preStop `sleep` action needs 1.30+)


def k8s_documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


def test_kubernetes_manifests_are_valid():
    docs = k8s_documents()
    kinds = {doc["kind"] for _, doc in docs}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "Secret"} <= kinds
    for name, doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{name}: {exc.message} at {list(exc.path)}") from None


def test_deployment_probes_drain_and_runs_as_non_root():
    (dep,) = [d for _, d in k8s_documents() if d["kind"] == "Deployment"]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["lifecycle"]["preStop"]["sleep"]["seconds"] < pod["terminationGracePeriodSeconds"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (pdb,) = [d for _, d in k8s_documents() if d["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]


def test_configmap_holds_a_valid_roomserver_config(tmp_path: Path):
    (cm,) = [d for _, d in k8s_documents() if d["kind"] == "ConfigMap"]
    path = tmp_path / "roomserver.toml"
    path.write_text(cm["data"]["roomserver.toml"])
    assert read_file(str(path))  # unknown keys or bad values raise ConfigError


def test_compose_file_is_valid_against_the_compose_spec():
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(doc)
    services = doc["services"]
    assert sum(name.startswith("roomserver-") for name in services) == 3
    assert sum(re.fullmatch(r"redis-\d", name) is not None for name in services) == 6
    assert "haproxy" in services
    haproxy = (DEPLOY / "haproxy.cfg").read_text()
    assert "timeout tunnel" in haproxy and "option httpchk GET /readyz" in haproxy
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        env = {**os.environ, "ROOMSERVER_APP": "shop:" + "x" * 32, "TURN_SECRET": "t" * 32}
        subprocess.run(
            ["docker", "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "-q"], check=True, env=env
        )


def test_dockerfile_is_multi_stage_non_root_with_healthcheck():
    text = (DEPLOY / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    (user,) = re.findall(r"^USER (\S+)", text, re.M)
    assert not user.startswith(("root", "0:")) and user != "0"
    assert re.search(r"^HEALTHCHECK .*/healthz", text, re.M | re.S)
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for part in src.split():
            assert list(ROOT.glob(part)), f"COPY {part}: not in the checkout"


@pytest.mark.slow
async def test_local_cluster_script_serves_one_room_across_nodes():
    redis_port = free_port_run(6, cluster_bus=True)
    redis_ports = range(redis_port, redis_port + 6)
    port = free_port_run(3, avoid=[*redis_ports, *(p + 10000 for p in redis_ports)])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ROOMSERVER_")},
        "ROOMSERVER": f"{sys.executable} -m roomserver.cli",
        "PYTHON": sys.executable,
        "PYTHONPATH": str(ROOT),
        "PORT": str(port),
        "REDIS_PORT": str(redis_port),
        "ROOMSERVER_MAX_CONNECTIONS_PER_IP": "0",
    }
    proc = subprocess.Popen(
        ["bash", str(DEPLOY / "local-cluster.sh")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        secret = urls = None
        for line in proc.stdout:  # the script bounds every wait; EOF if it exits
            if line.startswith("local-cluster: dev mode, ROOMSERVER_DEV_SECRET="):
                secret = line.strip().rpartition("=")[2]
            if "local-cluster: ready:" in line:
                urls = line.split("ready:")[1].split()
                break
        assert secret and urls and len(urls) == 3, proc.stderr.read() if proc.stderr else ""
        host = RoomClient(urls[0], mint_token(DEV_APP, secret, "h", "host", room="demo"), reconnect=False)
        viewer = RoomClient(urls[2], mint_token(DEV_APP, secret, "v", "viewer", room="demo"), reconnect=False)
        rec = Recorder(viewer)
        try:
            await host.connect()
            await viewer.connect()
            await host.join("demo")
            await viewer.join("demo")
            await host.send_barrage("demo", "across nodes")
            (event,) = await rec.wait("barrage", timeout=10)
            assert event["data"]["text"] == "across nodes"
        finally:
            await host.close()
            await viewer.close()
        # The script stops what it started (Redis, nodes) on SIGTERM.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 143
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    # Nothing listens any more (bind could still fail: closed connections in TIME_WAIT).
    for p in [*range(redis_port, redis_port + 6), *range(port, port + 3)]:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", p), timeout=2).close()
