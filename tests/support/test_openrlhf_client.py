"""The OpenRLHF client replica against a tiny `/get_reward` app on a real uvicorn server (127.0.0.1).

The app echoes the contract (strip the prompt and template tokens from `query`, answer
`rewards`/`scores`/`extra_logs` aligned with `query`), so the replica is proven before the
real endpoint exists; then the same tests can point at `rubricgate serve`.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.support.openrlhf_client import (
    chatml_tokenizer, experience_info, fetch_rewards_via_http, legacy_padded_queries, make_query, openrlhf_request,
    remote_rm_fn, request_api_wrapper, single_turn_reward,
)

END_TOKENS = ("<|im_end|>", "<|endoftext|>")


@dataclass
class EchoRewardServer:
    """`POST /get_reward` that grades the response's length; scripted failures and delays."""

    fail_first: int = 0
    delay_s: float = 0.0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/get_reward")
        async def get_reward(request: Request) -> JSONResponse:
            self.headers.append({k.lower(): v for k, v in request.headers.items()})
            body = await request.json()
            self.bodies.append(body)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if len(self.bodies) <= self.fail_first:
                return JSONResponse({"message": "try again"}, status_code=503)
            queries, prompts = body["query"], body["prompts"]
            assert len(queries) == len(prompts) == len(body["labels"])
            texts = []
            for query, prompt in zip(queries, prompts, strict=True):
                text = query.removeprefix(prompt) if query.startswith(prompt) else query
                for token in END_TOKENS:
                    text = text.replace(token, "")
                texts.append(text.strip())
            self.responses.extend(texts)
            scores = [min(1.0, len(t) / 20) for t in texts]
            return JSONResponse({"rewards": scores, "scores": scores,
                                 "extra_logs": {"response_chars": [float(len(t)) for t in texts]}})

        return app


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """`app` on a real uvicorn server on 127.0.0.1 with a free port; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return chatml_tokenizer()


def rollout(tokenizer: Any, question: str, answer: str) -> tuple[str, str]:
    """(prompt, query) the way OpenRLHF builds them: chat template, then prompt ids + response ids + EOS."""
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                           add_generation_prompt=True)
    action_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return prompt, make_query(tokenizer, prompt, action_ids)


def test_query_is_prompt_plus_response_with_template_tokens(tokenizer: Any) -> None:
    prompt, query = rollout(tokenizer, "Héllo, what is 2+2?", "4, naturally.")
    assert prompt == "<|im_start|>user\nHéllo, what is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    assert query == prompt + "4, naturally.<|im_end|>"
    [legacy, short] = legacy_padded_queries(
        tokenizer, [prompt, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"],
        [tokenizer("Four.", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id],
         tokenizer("Hello there, friend.", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]])
    pad = "<|endoftext|>"
    assert legacy.startswith(prompt) and legacy.endswith("Four.<|im_end|>" + pad * 15)  # right padding
    assert re.fullmatch(r"(<\|endoftext\|>)+<\|im_start\|>user\nHi<\|im_end\|>\n.*", short, re.S)  # left padding
    assert short.replace(pad, "").endswith("<|im_start|>assistant\nHello there, friend.<|im_end|>")


async def test_one_sample_per_request_parsed_like_the_executor(tokenizer: Any) -> None:
    echo = EchoRewardServer()
    prompt, query = rollout(tokenizer, "Say something kind.", "You did great today!")
    with serve(echo.app()) as url:
        output = await single_turn_reward(f"{url}/get_reward", query, prompt, "rubric:helpfulness")

    assert echo.bodies == [{"query": [query], "prompts": [prompt], "labels": ["rubric:helpfulness"]}]
    assert echo.headers[0]["content-type"] == "application/json"
    assert "aiohttp" in echo.headers[0]["user-agent"]
    assert echo.responses == ["You did great today!"]
    assert output == {"reward": [1.0], "scores": [1.0], "extra_logs": {"response_chars": [20.0]}}
    info = experience_info(output)
    assert info["reward"].tolist() == [[1.0]] and info["score"].tolist() == [[1.0]]
    assert info["response_chars"].tolist() == [[20.0]]


async def test_server_errors_are_retried_then_reported_as_no_reward(tokenizer: Any) -> None:
    prompt, query = rollout(tokenizer, "Hi?", "Hello.")
    flaky = EchoRewardServer(fail_first=2)
    with serve(flaky.app()) as url:
        reply = await openrlhf_request(f"{url}/get_reward", [query], [prompt], [""], retry_sleep_s=0)
    assert len(flaky.bodies) == 3 and reply["rewards"] == [0.3]

    down = EchoRewardServer(fail_first=99)
    with serve(down.app()) as url:
        with pytest.raises(RuntimeError, match="5 times"):
            await openrlhf_request(f"{url}/get_reward", [query], [prompt], [""], retry_sleep_s=0)
        output = await single_turn_reward(f"{url}/get_reward", query, prompt, "", retry_sleep_s=0)
    assert len(down.bodies) == 10
    assert output == {"reward": None, "scores": None, "extra_logs": {}}


async def test_timeouts_are_retried_like_other_errors(tokenizer: Any) -> None:
    prompt, query = rollout(tokenizer, "Hi?", "Hello.")
    slow = EchoRewardServer(delay_s=0.5)
    with serve(slow.app()) as url:
        with pytest.raises(RuntimeError):
            await openrlhf_request(f"{url}/get_reward", [query], [prompt], [""], timeout_s=0.1, try_max_times=2,
                                   retry_sleep_s=0)
    assert len(slow.bodies) == 2


async def test_several_servers_share_the_list_evenly(tokenizer: Any) -> None:
    rollouts = [rollout(tokenizer, f"Question {i}?", "x" * (i + 1)) for i in range(3)]
    first, second = EchoRewardServer(), EchoRewardServer()
    with serve(first.app()) as url_a, serve(second.app()) as url_b:
        infos = await fetch_rewards_via_http([f"{url_a}/get_reward", f"{url_b}/get_reward"],
                                             [q for _, q in rollouts], [p for p, _ in rollouts], ["", "", ""])
    assert [len(b["query"]) for b in first.bodies + second.bodies] == [2, 1]
    assert [info["rewards"] for info in infos] == [[0.05, 0.1], [0.15]]


def test_sync_client_of_older_releases(tokenizer: Any) -> None:
    rollouts = [rollout(tokenizer, "Hi?", "Hello."), rollout(tokenizer, "Bye?", "Goodbye, see you soon.")]
    echo = EchoRewardServer()
    with serve(echo.app()) as url:
        rewards = remote_rm_fn(f"{url}/get_reward", [q for _, q in rollouts], [p for p, _ in rollouts], ["", ""])
        whole = request_api_wrapper(f"{url}/get_reward", {"query": [rollouts[0][1]], "prompts": [rollouts[0][0]],
                                                          "labels": [""]})
    assert rewards.tolist() == pytest.approx([0.3, 1.0])
    assert set(whole) == {"rewards", "scores", "extra_logs"}
    assert echo.headers[0]["content-type"] == "application/json"


def test_a_null_reward_cannot_become_an_openrlhf_tensor() -> None:
    """Why `/get_reward` must answer numbers: OpenRLHF turns the reply into tensors unguarded."""
    with pytest.raises((RuntimeError, TypeError)):
        experience_info({"reward": [None], "scores": [None], "extra_logs": {}})
