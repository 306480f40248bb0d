"""The serving image's install and start steps, repeated without Docker.

Like the Dockerfile: build a wheel from pyproject.toml + README.md + service/, install it with
no extras into a fresh virtual environment, check torch is absent, then run the Dockerfile's
CMD from a folder holding only gunicorn.conf.py and exported_models/ (so the installed package,
not the source tree, is what serves), and probe it with the Dockerfile's HEALTHCHECK command.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from service.settings import Settings
from tests.service.live_server import free_port, http_json, running_server

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "Dockerfile"
CONF = REPO_ROOT / "gunicorn.conf.py"
LOCK = REPO_ROOT / "requirements" / "serve.txt"
PROJECT = "rnn-inference-service"
TORCH_ABSENT = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"
LIST_VERSIONS = (
    "import importlib.metadata as m, json, re; print(json.dumps({re.sub(r'[-_.]+', '-', "
    "d.metadata['Name']).lower(): d.version for d in m.distributions()}))"
)


def dockerfile_instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", "", DOCKERFILE.read_text("utf-8"))
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def exec_form(keyword: str) -> list[str]:
    """The JSON command array of the last ``CMD``, or of the ``HEALTHCHECK``'s ``CMD``."""
    lines = [line for line in dockerfile_instructions() if line.split()[0] == keyword]
    assert lines, f"the Dockerfile has no {keyword}"
    return json.loads(lines[-1][lines[-1].index("[") :])


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, **kwargs)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_compose_lets_gunicorn_finish_requests_in_flight_and_keeps_the_image_healthcheck():
    service = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text("utf-8"))["services"]
    (inference,) = service.values()
    graceful = re.search(r"^graceful_timeout = (\d+)", CONF.read_text("utf-8"), re.MULTILINE)

    assert graceful, "gunicorn.conf.py sets no graceful_timeout"
    grace = re.fullmatch(r"(\d+)s", str(inference.get("stop_grace_period", "10s")))
    assert grace and int(grace[1]) > int(graceful[1]), "Docker would SIGKILL before gunicorn ends"
    # The image's HEALTHCHECK follows $PORT; a compose copy would not.
    assert "healthcheck" not in inference


def test_the_image_and_compose_serve_grpc_on_the_port_they_publish() -> None:
    instructions = dockerfile_instructions()
    env = next(line for line in instructions if line.startswith("ENV ") and "PORT=" in line)
    grpc_port = re.search(r"\bGRPC_PORT=(\d+)", env)
    assert grpc_port, "the image sets no GRPC_PORT"
    exposed = next(line for line in instructions if line.startswith("EXPOSE ")).split()[1:]
    assert grpc_port[1] in exposed
    health_port = re.search(r"\bHEALTH_PORT=(\d+)", env)
    assert health_port and health_port[1] in exposed, "the image's probe port is not exposed"
    (inference,) = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text("utf-8"))[
        "services"
    ].values()
    published = inference["environment"]["GRPC_PORT"]
    assert f"127.0.0.1:{published}:{published}" in inference["ports"]


def test_the_dockerfile_installs_the_base_package_only() -> None:
    instructions = dockerfile_instructions()
    installs = [line for line in instructions if "pip install" in line or "pip wheel" in line]

    assert installs, "the Dockerfile installs nothing"
    assert not any("[" in line.split("&&")[0] for line in installs), installs  # no extras
    # at the pinned versions that make test runs against, before the project's wheel (a layer
    # that a change to the code leaves cached), and nothing the lock lacks
    assert "COPY requirements/serve.txt /tmp/serve.txt" in instructions
    lock, wheel = (
        next(i for i, line in enumerate(instructions) if command in line)
        for command in ("pip install -r /tmp/serve.txt", "pip install --no-deps /wheels/*.whl")
    )
    assert lock < instructions.index("COPY --from=build /wheels /wheels") < wheel
    assert "pip check" in instructions[wheel]
    assert any(TORCH_ABSENT in line for line in instructions)
    assert any(line.startswith("USER ") and "root" not in line for line in instructions)


def outside_env() -> dict[str, str]:
    """This process's environment minus what would leak the dev venv or service settings in."""
    dropped = {"PYTHONPATH", "VIRTUAL_ENV", "WEB_CONCURRENCY"} | {
        name.upper() for name in Settings.model_fields
    }
    return {k: v for k, v in os.environ.items() if k.upper() not in dropped}


def install_like_the_image(tmp_path: Path, env: dict[str, str]) -> Path:
    """Build the wheel from what the build stage copies; install the lock, then the wheel without
    its dependencies, in a fresh venv, as the image does; its bin/."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    shutil.copytree(
        REPO_ROOT / "service", source / "service", ignore=shutil.ignore_patterns("__pycache__")
    )
    run([sys.executable, "-m", "venv", str(tmp_path / "venv")])
    bin_dir = tmp_path / "venv" / "bin"
    pip = [str(bin_dir / "python"), "-m", "pip", "--disable-pip-version-check"]
    wheels = tmp_path / "wheels"
    run([*pip, "wheel", "--no-deps", "--wheel-dir", str(wheels), str(source)], env=env)
    run([*pip, "install", "-r", str(LOCK)], env=env)
    run([*pip, "install", "--no-deps", *map(str, wheels.glob("*.whl"))], env=env)
    run([*pip, "check"], env=env)
    return bin_dir


def pins(lock: Path) -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line of a pip-compile output."""
    found = {}
    for line in lock.read_text("utf-8").splitlines():
        requirement = line.split("#")[0].strip()
        if requirement:
            name, _, version = requirement.partition("==")
            found[canonicalize_name(name)] = version
    return found


def test_the_lock_pins_every_base_dependency_within_its_range_and_no_torch() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    pinned = pins(LOCK)

    assert pinned and all(pinned.values()), "every line of the lock is name==version"
    for dependency in map(Requirement, project["dependencies"]):
        name = canonicalize_name(dependency.name)
        assert name in pinned, f"{name} is not in {LOCK.name}: run make lock"
        assert dependency.specifier.contains(pinned[name]), (
            f"{LOCK.name} pins {name}=={pinned[name]}, outside {dependency}: run make lock"
        )
    assert not any(name.startswith("torch") for name in pinned)


def test_docker_build_context_holds_what_the_dockerfile_copies() -> None:
    """.dockerignore leaves out everything (*) but what it names with !: every COPY from the
    build context must be named, or the build fails."""
    allowed = [
        line[1:].strip().rstrip("/")
        for line in (REPO_ROOT / ".dockerignore").read_text("utf-8").splitlines()
        if line.startswith("!")
    ]
    copies = [
        line.split()[1:-1]
        for line in dockerfile_instructions()
        if line.startswith("COPY ") and "--from" not in line
    ]

    assert copies
    for source in (s for sources in copies for s in sources):
        assert any(source == a or source.startswith(a + "/") for a in allowed), source


def app_folder_like_the_image(tmp_path: Path) -> Path:
    """WORKDIR /app: gunicorn.conf.py and exported_models/, and no source tree."""
    assert (REPO_ROOT / "exported_models" / "sentiment" / "manifest.json").is_file(), (
        "exported_models/sentiment is missing: the image would ship no model"
    )
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    shutil.copy2(REPO_ROOT / "gunicorn.conf.py", app_dir)
    shutil.copytree(REPO_ROOT / "exported_models", app_dir / "exported_models")
    return app_dir


@pytest.mark.slow
def test_the_image_steps_install_and_serve_without_torch(tmp_path: Path) -> None:
    env = outside_env()
    bin_dir = install_like_the_image(tmp_path, env)
    run([str(bin_dir / "python"), "-c", TORCH_ABSENT], env=env)
    installed = json.loads(run([str(bin_dir / "python"), "-c", LIST_VERSIONS], env=env).stdout)
    assert {name: installed.get(name) for name in pins(LOCK)} == pins(LOCK), (
        "the image installs the lock's versions"
    )
    unpinned = set(installed) - set(pins(LOCK)) - {"pip", "setuptools", "wheel", PROJECT}
    assert not unpinned, f"installed but not pinned in {LOCK.name}: run make lock"
    app_dir = app_folder_like_the_image(tmp_path)
    port = free_port()
    server_env = {
        **env,
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",  # `gunicorn`, `python` = the venv's
        "PORT": str(port),
        "MODEL_DIR": str(app_dir / "exported_models"),
        "WEB_CONCURRENCY": "1",
        "GRPC_PORT": str(grpc_port := free_port()),
        "HEALTH_PORT": str(health_port := free_port()),
    }
    command, healthcheck = exec_form("CMD"), exec_form("HEALTHCHECK")

    with running_server(command, cwd=app_dir, env=server_env, port=port, log_dir=tmp_path) as srv:
        status, body = http_json("POST", f"{srv.url}/v1/sentiment", {"texts": ["Great fun."]})
        probe = subprocess.run(healthcheck, env=server_env, capture_output=True, timeout=30)
        health = http_json("GET", f"http://127.0.0.1:{health_port}/v2/health/ready")
        # gRPC from the installed package (its protocol descriptor is package data)
        with triton_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}") as client:
            text = triton_grpc.InferInput("text", [1], "BYTES")
            text.set_data_from_numpy(np.array([b"Great fun."], dtype=object))
            label = client.infer("sentiment", [text]).as_numpy("label")[0].decode()

    assert status == 200, body
    assert body["results"][0]["label"] in {"negative", "positive"}
    assert label == body["results"][0]["label"]
    assert probe.returncode == 0, probe.stderr
    assert health[0] == 200, health


def test_the_readme_s_kubernetes_probes_use_the_image_s_ports_and_stop_in_time() -> None:
    readme = (REPO_ROOT / "README.md").read_text("utf-8")
    block = readme.split("On Kubernetes,", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    spec = yaml.safe_load(block)
    instructions = dockerfile_instructions()
    env = next(line for line in instructions if line.startswith("ENV ") and "PORT=" in line)
    ports = {name: int(port) for name, port in re.findall(r"\b(\w*PORT)=(\d+)", env)}
    exposed = next(line for line in instructions if line.startswith("EXPOSE "))

    assert {p["containerPort"] for p in spec["ports"]} == set(map(int, exposed.split()[1:]))
    assert set(ports.values()) == {p["containerPort"] for p in spec["ports"]}
    for probe, path in [
        ("livenessProbe", "/v2/health/live"),
        ("readinessProbe", "/v2/health/ready"),
        ("startupProbe", "/v2/health/ready"),
    ]:
        assert spec[probe]["httpGet"] == {"path": path, "port": ports["HEALTH_PORT"]}
    pre_stop = int(spec["lifecycle"]["preStop"]["exec"]["command"][1])
    grace = int(re.search(r"terminationGracePeriodSeconds: (\d+)", block)[1])
    graceful = int(re.search(r"^graceful_timeout = (\d+)", CONF.read_text("utf-8"), re.M)[1])
    assert grace > pre_stop + graceful
