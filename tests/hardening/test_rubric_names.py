"""Rubric names from requests resolve only inside the rubric folders, and rubric errors never echo
a file's content. Before: a name matching a file in the server's working directory was read and a
line of it came back in the 400 (`secret.env` -> `DB_PASSWORD: ...`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rubricgate.errors import UsageError
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.interfaces.http import ServerSettings, create_app
from rubricgate.library.rubric_files import load_rubric_file, resolve_rubric
from rubricgate.models.config import ScoringConfig
from tests.support.app_server import AppServer, serving

SECRET = "hunter2-do-not-echo"
ITEM = {"prompt": "What is 2+2?", "response": "4"}
GOOD = "id: mine\ncriteria:\n  - {id: ok, kind: principle, text: The response is ok.}\n"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The server's working directory, holding secrets that look like rubric names."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "secret.env").write_text(f"DB_PASSWORD: {SECRET}\nAPI_TOKEN={SECRET}\n")
    (cwd / "secret").write_text(f"DB_PASSWORD: {SECRET}\n")
    (cwd / "creds.yaml").write_text(f"DB_PASSWORD: {SECRET}\n")
    (cwd / "mine.yaml").write_text(GOOD)  # a valid rubric, but not in a rubric folder
    monkeypatch.chdir(cwd)
    return cwd


@pytest.fixture
def rubric_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "rubrics"
    folder.mkdir()
    (folder / "broken.yaml").write_text(f'id: broken\ncriteria: [\n  "{SECRET}\n')
    (folder / "keys.yaml").write_text(f"id: keys\nDB_PASSWORD: {SECRET}\n{SECRET}: 1\n"
                                      "criteria:\n  - {id: ok, kind: principle, text: The response is ok.}\n")
    (folder / "folder-rubric.yaml").write_text(GOOD.replace("mine", "folder-rubric"))
    return folder


@pytest.fixture
def server(workdir: Path, rubric_dir: Path) -> Iterator[AppServer]:
    # rubric_paths left at its default (True): the HTTP layer itself asks for ids only.
    gateway = Gateway.open(GatewayConfig(judge="fake:best", scoring=ScoringConfig(votes=1), rubric_dirs=(rubric_dir,)))
    with serving(create_app(gateway, ServerSettings(default_rubric="helpfulness"))) as running:
        yield running


def assert_no_content(response: httpx.Response) -> None:
    assert SECRET not in response.text and "DB_PASSWORD" not in response.text and "API_TOKEN" not in response.text, \
        response.text


@pytest.mark.parametrize("name", ["secret.env", "secret", "creds.yaml", "creds", "mine", "./mine.yaml",
                                  "../cwd/secret.env", "/etc/hostname", ".env", "..", "mine.yml"])
def test_request_rubric_names_never_reach_the_working_directory(server: AppServer, name: str) -> None:
    response = httpx.post(f"{server.url}/v1/reward", json={"rubric": name, "items": [ITEM]}, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "usage_error"
    assert_no_content(response)


@pytest.mark.parametrize("label", ["rubric:secret.env", "rubric:secret", '{"rubric": "creds"}', "rubric:mine",
                                   '{"rubric": "../cwd/secret.env"}'])
def test_openrlhf_labels_name_rubrics_by_id_only(server: AppServer, label: str) -> None:
    response = httpx.post(f"{server.url}/get_reward", timeout=30,
                          json={"query": ["Q: 2+2? A: 4"], "prompts": ["Q: 2+2?"], "labels": [label]})
    assert response.status_code == 400, response.text
    assert_no_content(response)


def test_rubric_folders_still_resolve_and_their_errors_name_file_and_line_not_content(server: AppServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/v1/reward", json={"rubric": "folder-rubric", "items": [ITEM]}).status_code == 200
        assert client.post("/v1/reward", json={"rubric": "helpfulness", "items": [ITEM]}).status_code == 200
        broken = client.post("/v1/reward", json={"rubric": "broken", "items": [ITEM]})
        keys = client.post("/v1/reward", json={"rubric": "keys", "items": [ITEM]})
        versions = client.get("/v1/rubrics/secret/versions")
    assert broken.status_code == 400 and keys.status_code == 400
    assert "broken.yaml: not valid YAML: line 3" in broken.json()["message"]
    assert "keys.yaml: invalid rubric: (top level): an unknown field" in keys.json()["message"]
    for response in (broken, keys, versions):
        assert_no_content(response)
    assert versions.status_code == 404


def test_the_operator_may_still_name_the_default_rubric_by_path(workdir: Path) -> None:
    gateway = Gateway.open(GatewayConfig(judge="fake:best", scoring=ScoringConfig(votes=1), rubric_paths=False))
    with serving(create_app(gateway, ServerSettings(default_rubric=str(workdir / "mine.yaml")))) as running:
        response = httpx.post(f"{running.url}/v1/reward", json={"items": [ITEM]}, timeout=30)
    assert response.status_code == 200 and response.json()["results"][0]["rubric"].startswith("mine@")


def test_the_cli_and_python_may_pass_paths_and_the_id_only_mode_refuses_them(workdir: Path) -> None:
    assert resolve_rubric("mine.yaml").id == "mine"
    assert resolve_rubric(str(workdir / "mine.yaml")).id == "mine"
    for name in ("mine.yaml", "mine", str(workdir / "mine.yaml"), "secret.env"):
        with pytest.raises(UsageError) as caught:
            resolve_rubric(name, allow_paths=False)
        assert SECRET not in str(caught.value)
    assert resolve_rubric("helpfulness", allow_paths=False).id == "helpfulness"


@pytest.mark.parametrize(("text", "suffix", "expected"), [
    (f"DB_PASSWORD: {SECRET}\nAPI_TOKEN={SECRET}\n", ".yaml",
     "not valid YAML: line 2, column 1: while scanning a simple key; line 3, column 1: could not find expected ':'"),
    (f'a: "{SECRET}\n', ".yaml", "not valid YAML: line 1, column 4: while scanning a quoted scalar"),
    (f"a: *{SECRET}\n", ".yaml", "not valid YAML: line 1, column 4: found undefined alias ..."),
    (f'{{"id": "x",\n "criteria": {SECRET}}}', ".json", "not valid JSON: line 2, column 14: Expecting value"),
    (f"DB_PASSWORD: {SECRET}\n", ".yaml", "invalid rubric: id: required field is missing"),
    (f"- {SECRET}\n", ".yaml", "a rubric must be a mapping with id and criteria, got list"),
])
def test_parse_errors_name_the_file_and_line_never_the_content(tmp_path: Path, text: str, suffix: str,
                                                              expected: str) -> None:
    path = tmp_path / f"file{suffix}"
    path.write_text(text)
    with pytest.raises(UsageError) as caught:
        load_rubric_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and expected in message, message
    assert SECRET not in message and "DB_PASSWORD" not in message and "API_TOKEN" not in message


def test_a_file_that_is_not_text_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"id: x\n\xff\xfe" + SECRET.encode())
    with pytest.raises(UsageError, match=r"binary.yaml: not UTF-8 text \(byte 6\)"):
        load_rubric_file(path)


def test_misspelt_rubric_fields_are_still_named() -> None:
    from rubricgate.library.rubric_files import parse_rubric

    with pytest.raises(UsageError, match=r"critera: unknown field"):
        parse_rubric({"id": "x", "critera": []})
