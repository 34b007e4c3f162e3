"""The deploy files agree with the project: no Docker engine here, so they are parsed and checked."""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path

import pytest
import yaml

from orchestrator.cli.main import cli
from orchestrator.settings import ENVIRONMENT_VARIABLES

ROOT = Path(__file__).parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
OURS = {name: s for name, s in SERVICES.items() if s.get("image", "").startswith("executioner")}
ENV_EXAMPLE = dict(
    line.split("=", 1)
    for line in (ROOT / ".env.example").read_text().splitlines()
    if line and not line.startswith("#")
)


def assert_real_command(argv: list[str], where: str) -> None:
    assert argv[0] in ("executioner", "/opt/executioner/bin/executioner"), where
    command = cli.commands.get(argv[1])
    assert command is not None, f"{where}: `executioner {argv[1]}` does not exist"
    if argv[1] == "db":
        assert argv[2] in command.commands, where


def test_every_service_of_ours_runs_a_real_command():
    assert {"migrate", "worker", "worker-heavy", "flower", "web", "scheduler"} <= set(OURS)
    for name, service in OURS.items():
        assert_real_command(service["command"], f"compose service {name}")


def test_every_variable_is_a_real_setting_and_documented():
    for name, service in SERVICES.items():
        for var in service.get("environment", {}):
            if var.startswith(("EXECUTIONER_", "FLOWER_")):
                assert var in ENVIRONMENT_VARIABLES, f"{name} sets unknown setting {var}"
    referenced = set(re.findall(r"\$\{(\w+)", (ROOT / "docker-compose.yml").read_text()))
    assert referenced <= set(ENV_EXAMPLE), referenced - set(ENV_EXAMPLE)
    assert set(ENVIRONMENT_VARIABLES) <= set(ENV_EXAMPLE), set(ENVIRONMENT_VARIABLES) - set(ENV_EXAMPLE)
    readme = (ROOT / "README.md").read_text()
    for var in ENVIRONMENT_VARIABLES:
        if var.startswith("EXECUTIONER_HEARTBEAT"):
            var = "EXECUTIONER_HEARTBEAT_INTERVAL"
        assert var in readme or var == "FLOWER_BASIC_AUTH", f"{var} is not in the README"


def test_the_compose_services_are_sane():
    assert "--appendonly" in SERVICES["redis"]["command"] and "--requirepass" in SERVICES["redis"]["command"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in SERVICES["postgres"]["volumes"])
    migrate = SERVICES["migrate"]
    assert migrate["command"][1:] == ["db", "upgrade"] and migrate["restart"] == "no"
    assert migrate["build"] == "." and (ROOT / "Dockerfile").exists()
    for name in ("worker", "worker-heavy"):  # scalable: no fixed name, no host port
        assert "container_name" not in SERVICES[name] and "ports" not in SERVICES[name]
        assert SERVICES[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    queue = SERVICES["worker-heavy"]["command"][SERVICES["worker-heavy"]["command"].index("-Q") + 1]
    assert queue != "default"
    assert SERVICES["flower"]["ports"] == ["5555:5555"]
    assert "FLOWER_BASIC_AUTH" in SERVICES["flower"]["environment"]
    assert SERVICES["web"]["ports"] == ["8686:8686"]
    assert "EXECUTIONER_WEB_BASIC_AUTH" in SERVICES["web"]["environment"]
    for service in SERVICES.values():
        for dep in service.get("depends_on", {}):
            assert dep in SERVICES
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in COMPOSE["volumes"], source
            else:
                assert (ROOT / source).exists(), source


def test_the_dockerfile_copies_what_exists():
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def test_the_scheduled_example_is_valid():
    from orchestrator.loader import load_workflow

    workflow = load_workflow(ROOT / "examples" / "nightly.yaml")
    assert workflow.schedule is not None
    assert "heavy" in {job.queue for job in workflow.jobs.values()}


@pytest.mark.parametrize(
    "unit", sorted((ROOT / "deploy" / "systemd").glob("*.service")), ids=lambda p: p.name
)
def test_systemd_units(unit):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read(unit)
    service = parser["Service"]
    assert service["User"] == "executioner" and service["EnvironmentFile"].startswith("/etc/executioner/")
    assert service["Restart"] in ("always", "on-failure")
    argv = shlex.split(service["ExecStart"])
    assert_real_command(argv, unit.name)
    if argv[1] == "worker":
        assert int(service["TimeoutStopSec"].removesuffix("min")) * 60 > 3600  # > the longest job
    assert parser["Install"]["WantedBy"] == "multi-user.target"


def k8s_documents() -> list[dict]:
    docs = []
    for path in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_kubernetes_manifests():
    docs = k8s_documents()
    kinds = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert ("Job", "executioner-migrate") in kinds and ("Service", "executioner-flower") in kinds
    assert ("Service", "executioner-web") in kinds
    config = {d["metadata"]["name"]: d for d in docs if d["kind"] in ("ConfigMap", "Secret")}
    settings = {**config["executioner-config"]["data"], **config["executioner-secrets"]["stringData"]}
    assert set(settings) <= set(ENVIRONMENT_VARIABLES)
    workers = [
        d
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("executioner-worker-")
    ]
    assert len(workers) >= 2
    queues = set()
    for d in docs:
        spec = d.get("spec", {}).get("template", {}).get("spec")
        if not spec:
            continue
        for container in spec["containers"]:
            assert_real_command(container["command"], d["metadata"]["name"])
        if d in workers:
            argv = spec["containers"][0]["command"]
            queues.add(argv[argv.index("-Q") + 1])
            longest = int(d["metadata"]["annotations"]["executioner.io/max-job-timeout-seconds"])
            assert spec["terminationGracePeriodSeconds"] > longest
    assert queues == {"default", "heavy"}
    migrate = next(d for d in docs if d["kind"] == "Job")
    assert migrate["spec"]["template"]["spec"]["containers"][0]["command"][1:] == ["db", "upgrade"]
