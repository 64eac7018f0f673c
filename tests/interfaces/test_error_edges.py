"""Every error crosses the CLI and HTTP edges mapped once: a stable code, one line, no traceback;
exception groups (a TaskGroup's failures) included."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import typer
from fastapi import FastAPI
from fastapi.testclient import TestClient

from rubricgate.errors import CacheError, JudgeUnavailable, UsageError, error_code, error_message
from rubricgate.interfaces.cli.common import State, handle_errors
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.interfaces.http import ServerSettings, create_app
from rubricgate.judges.fake import FakeBackend
from rubricgate.models.config import ScoringConfig
from rubricgate.models.judging import JudgeRequest

ITEMS = [{"prompt": "What is 2+2?", "response": "4"}, {"prompt": "Capital of France?", "response": "Paris."}]


def _group(*errors: Exception) -> ExceptionGroup[Exception]:
    return ExceptionGroup("unhandled errors in a TaskGroup", list(errors))


@pytest.mark.parametrize(("error", "code"), [
    (UsageError("bad flag"), "usage_error"),
    (JudgeUnavailable("timeout"), "judge_unavailable"),
    (CacheError("locked"), "cache_error"),
    (KeyError("x"), "internal_error"),
    (_group(CacheError("a"), _group(CacheError("b"))), "cache_error"),
    (_group(CacheError("a"), UsageError("b")), "internal_error"),
    (_group(ValueError("a")), "internal_error"),
])
def test_error_codes_unwrap_exception_groups(error: Exception, code: str) -> None:
    assert error_code(error) == code


def test_a_group_is_one_line_with_its_distinct_messages() -> None:
    assert error_message(_group(CacheError("locked"), CacheError("locked"))) == "locked"
    assert error_message(_group(CacheError("locked"), CacheError("disk\nfull"))) == "locked (and 1 other error(s))"


# ------------------------------------------------------------------ HTTP


def crashing_judge(request: JudgeRequest) -> str:
    raise ValueError("a bug in a judge backend")


@pytest.fixture
def client() -> Iterator[TestClient]:
    """The real app around a judge that fails with an unexpected error, plus routes that raise."""
    gateway = Gateway(GatewayConfig(judge="fake:crash", scoring=ScoringConfig(votes=1)), FakeBackend(crashing_judge),
                      store=None)
    app: FastAPI = create_app(gateway, ServerSettings(default_rubric="factual-qa"))

    @app.get("/raise/{kind}")
    async def raise_it(kind: str) -> None:
        errors: dict[str, Exception] = {
            "cache_group": _group(CacheError("cache x: database is locked"), CacheError("cache x: disk full")),
            "mixed_group": _group(CacheError("locked"), RuntimeError("boom")),
            "runtime": RuntimeError("boom with a /secret/path"),
            "judge": JudgeUnavailable("no judge reachable"),
        }
        raise errors[kind]

    with TestClient(app, raise_server_exceptions=False) as running:
        yield running


@pytest.mark.parametrize(("kind", "status", "code"), [
    ("cache_group", 503, "cache_error"),
    ("mixed_group", 500, "internal_error"),
    ("runtime", 500, "internal_error"),
    ("judge", 503, "judge_unavailable"),
])
def test_every_error_is_json_with_a_stable_code(client: TestClient, kind: str, status: int, code: str) -> None:
    response = client.get(f"/raise/{kind}")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == code and response.json()["message"]
    assert "/secret/path" not in response.text  # internal details stay in the server log


def test_an_unexpected_error_while_scoring_is_a_null_per_item_not_a_500(client: TestClient) -> None:
    """Scoring is isolated per item (issue 13): each item the bug hits is null with a reason."""
    response = client.post("/v1/reward", json={"items": ITEMS})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["reward"] for r in results] == [None, None]
    assert all(r["reason"].startswith("internal_error: ValueError") for r in results)
    assert "a bug in a judge backend" not in response.text  # details stay in the server log


def test_usage_errors_keep_400(client: TestClient) -> None:
    response = client.post("/v1/reward", json={"items": ITEMS, "votes": 99})
    assert response.status_code == 400 and response.json()["error"] == "usage_error"


# ------------------------------------------------------------------ CLI


@pytest.mark.parametrize(("error", "exit_code", "line"), [
    (_group(CacheError("cache x: locked"), CacheError("cache x: locked")), 1, "error: cache x: locked"),
    (_group(UsageError("bad flag")), 2, "error: bad flag"),
    (_group(ValueError("boom")), 1, "internal error: ValueError: boom"),
    (KeyError("k"), 1, "internal error: KeyError"),
])
def test_handle_errors_prints_one_line_and_an_exit_code(error: Exception, exit_code: int, line: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exited, handle_errors():
        raise error
    assert exited.value.exit_code == exit_code
    err = capsys.readouterr().err
    assert line in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_handle_errors_shows_the_group_traceback_with_debug(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(State, "debug", True)
    with pytest.raises(typer.Exit), handle_errors():
        raise _group(CacheError("locked"))
    assert "Traceback" in capsys.readouterr().err


def test_handle_errors_lets_typer_exits_through() -> None:
    with pytest.raises(typer.Exit) as exited, handle_errors():
        raise typer.Exit(0)
    assert exited.value.exit_code == 0
