"""A faithful replica of OpenRLHF's remote reward-model client, for contract tests of `/get_reward`.

Read in OpenRLHF/OpenRLHF (github.com/OpenRLHF/OpenRLHF) and reproduced here line for line
where it matters (JSON body, headers, session use, timeout, retries, response parsing):

- `openrlhf/utils/agent.py` @ 04655bc3f38cd33109101fb948673aef3db37a9c, `SingleTurnAgentExecutor`
  (the current path; the same code sits in `openrlhf/utils/rollout.py` @ 61760f9c and
  06f132b8): after vLLM generates one response the executor builds
  `query = hf_tokenizer.decode(prompt_token_ids + action_token_ids, skip_special_tokens=False)`
  where `prompt_token_ids = hf_tokenizer(prompt, add_special_tokens=False)`, and posts ONE
  sample per request: `{"query": [query], "prompts": [prompt], "labels": [label]}` with
  `aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=180))` -> `session.post(url,
  json=data)` (a new session per attempt; aiohttp sets `Content-Type: application/json`),
  `raise_for_status()`, `await response.json()`; up to 5 attempts, `asyncio.sleep(1)` between
  them, then `RuntimeError`. Several `--remote_rm_url`s split the list evenly across servers.
  The reply is used as `reward = info.get("rewards")`, `scores = info.get("scores") or
  info.get("rewards")`, `extra_logs = info.get("extra_logs") or {}`; any failure is logged and
  leaves `reward = None`.
- `openrlhf/trainer/ppo_utils/samples_generator.py` @ db825a2483bfaf4257bf75f808018403760c1cb4,
  `_process_response_into_experience`: `torch.tensor([reward])`, `torch.tensor([scores])`
  and `torch.tensor([value])` per `extra_logs` key; the scores drive dynamic filtering
  (`e.scores[0].item()`). A `null` reward therefore cannot become a tensor: it raises there.
- `openrlhf/utils/remote_rm_utils.py` (the synchronous client of 0.5-0.8; @ 9b8641c1 and the
  0.8 `RemoteRewardModel` actor version): `requests.post(url=url, json=data, headers=
  {"Content-Type": "application/json"}, timeout=180)`, 5 attempts with `time.sleep(1)`; older
  releases return `response[score_key]` (`"rewards"`) as `torch.tensor`, 0.8 the whole dict.
  There the whole micro-batch went in one request and the queries came from
  `tokenizer.batch_decode(sequences, skip_special_tokens=False)`: in <= 0.5
  (`openrlhf/trainer/ppo_utils/experience_maker.py` @ 01359b46) the padded sequences were
  decoded as they were, pad tokens included; in 0.8 (@ 89308a0b) `remove_pad_token(sequences,
  attention_mask)` dropped the padding first.
- `openrlhf/datasets/prompts_dataset.py` @ 04655bc3: `prompt = apply_chat_template(chat,
  tokenize=False, add_generation_prompt=True)` with `--apply_chat_template` (else the raw
  input, optionally through `--input_template`), `label = data[label_key]` or `""` without
  `--label_key`.

So a current `query` is the prompt text (chat-template tokens such as `<|im_start|>` and any
BOS text the template writes, e.g. `<|begin_of_text|>`, kept verbatim) followed by the response
*with* its end token (`<|im_end|>`, `<|eot_id|>`, `</s>`, ...) when generation stopped there,
and no padding; only a left-truncated long prompt makes the query start mid-prompt. Legacy
batched queries may also carry runs of the pad token on both sides.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

logger = logging.getLogger(__name__)

TIMEOUT_S = 180.0
"""`aiohttp.ClientTimeout(total=180)` / `requests.post(..., timeout=180)` in OpenRLHF."""
TRY_MAX_TIMES = 5
RETRY_SLEEP_S = 1.0


async def openrlhf_request(url: str, queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any],
                           timeout_s: float = TIMEOUT_S, try_max_times: int = TRY_MAX_TIMES,
                           retry_sleep_s: float = RETRY_SLEEP_S) -> dict[str, Any]:
    """One `POST url` exactly as `SingleTurnAgentExecutor._fetch_rewards_via_http._post_request` sends it."""
    data = {"query": list(queries), "prompts": list(prompts), "labels": list(labels)}
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    for _ in range(try_max_times):
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.post(url, json=data) as response:
                    response.raise_for_status()
                    result: dict[str, Any] = await response.json()
                    return result
        except aiohttp.ClientError as e:
            logger.info(f"Request error, please check: {e}")
        except Exception as e:  # OpenRLHF's defensive catch: timeouts are not ClientErrors
            logger.info(f"Unexpected error, please check: {e}")
        await asyncio.sleep(retry_sleep_s)

    raise RuntimeError(f"Request error for {try_max_times} times, returning None. Please check the API server.")


async def fetch_rewards_via_http(endpoints: Sequence[str], queries: Sequence[str], prompts: Sequence[str],
                                 labels: Sequence[Any], **request_kwargs: Any) -> list[dict[str, Any]]:
    """Shard the lists evenly across reward servers, one request each, gathered in order."""
    num_servers = len(endpoints)
    batch_size = (len(queries) + num_servers - 1) // num_servers
    tasks = []
    for i, rm in enumerate(endpoints):
        start_idx = i * batch_size
        end_idx = min((i + 1) * batch_size, len(queries))
        tasks.append(asyncio.create_task(openrlhf_request(
            rm, queries[start_idx:end_idx], prompts[start_idx:end_idx], labels[start_idx:end_idx], **request_kwargs)))
    return list(await asyncio.gather(*tasks))


def reward_fields(rewards_info: dict[str, Any] | None) -> dict[str, Any]:
    """What the executor copies from one reply into its rollout output."""
    output: dict[str, Any] = {"reward": None, "scores": None, "extra_logs": {}}
    if rewards_info:
        output.update(
            reward=rewards_info.get("rewards"),
            scores=rewards_info.get("scores") or rewards_info.get("rewards"),
            extra_logs=rewards_info.get("extra_logs") or {},
        )
    return output


async def single_turn_reward(endpoints: str | Sequence[str], query: str, prompt: str, label: Any,
                             **request_kwargs: Any) -> dict[str, Any]:
    """The whole reward step of one rollout: one-sample request, parsing, failures left as None."""
    reward_endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
    try:
        rewards_info_list = await fetch_rewards_via_http(reward_endpoints, [query], [prompt], [label],
                                                         **request_kwargs)
        rewards_info = rewards_info_list[0] if rewards_info_list else None
        return reward_fields(rewards_info)
    except Exception as e:
        logger.info(f"[SingleTurnExecutor] Failed to fetch reward from remote RM: {e}")
        return reward_fields(None)


def experience_info(output: dict[str, Any]) -> dict[str, Any]:
    """`_process_response_into_experience`'s reward part: the tensors OpenRLHF trains and logs with."""
    import torch

    info: dict[str, Any] = {}
    reward_val = output.get("reward", None)
    score_val = output.get("scores", None)
    if reward_val is not None:
        info["reward"] = torch.tensor([reward_val])
    if score_val is not None:
        info["score"] = torch.tensor([score_val])
    for key, value in output.get("extra_logs", {}).items():
        if isinstance(value, torch.Tensor):
            value = value.flatten()[0].item()
        info[key] = torch.tensor([value])
    return info


def request_api_wrapper(url: str, data: dict[str, Any], score_key: str | None = None,
                        try_max_times: int = TRY_MAX_TIMES, retry_sleep_s: float = RETRY_SLEEP_S) -> Any:
    """The synchronous client of `remote_rm_utils.py`; `score_key` selects the older return value."""
    import requests

    headers = {
        "Content-Type": "application/json",
    }
    for _ in range(try_max_times):
        try:
            response = requests.post(url=url, json=data, headers=headers, timeout=TIMEOUT_S)
            response.raise_for_status()  # Raise an HTTPError for bad responses
            result = response.json()
            if score_key is None:
                return result
            assert score_key in result, f"{score_key} not in {result}"
            return result.get(score_key)
        except requests.RequestException as e:
            logger.info(f"Request error, please check: {e}")
        except Exception as e:
            logger.info(f"Unexpected error, please check: {e}")
        time.sleep(retry_sleep_s)

    raise Exception(f"Request error for {try_max_times} times, returning None. Please check the API server.")


def remote_rm_fn(api_url: str, queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any],
                 score_key: str = "rewards", **wrapper_kwargs: Any) -> Any:
    """`remote_rm_utils.remote_rm_fn`: the whole batch in one request, `torch.tensor(rewards)` back."""
    import torch

    scores = request_api_wrapper(api_url, {"query": list(queries), "prompts": list(prompts), "labels": list(labels)},
                                 score_key, **wrapper_kwargs)
    return torch.tensor(scores)


# ------------------------------------------------------------------------ building queries

def make_query(hf_tokenizer: Any, prompt: str, action_token_ids: Sequence[int]) -> str:
    """`query` as the current executor builds it from the prompt text and the generated ids."""
    prompt_token_ids = hf_tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"][0].tolist()
    return str(hf_tokenizer.decode(prompt_token_ids + list(action_token_ids), skip_special_tokens=False))


def legacy_padded_queries(hf_tokenizer: Any, prompts: Sequence[str], responses: Sequence[Sequence[int]]) -> list[str]:
    """OpenRLHF <= 0.5: left-padded prompts + right-padded responses, decoded with the pads."""
    pad = hf_tokenizer.pad_token_id
    prompt_ids = [hf_tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width_p = max(len(ids) for ids in prompt_ids)
    width_r = max(len(r) for r in responses)
    sequences = [[pad] * (width_p - len(p)) + p + list(r) + [pad] * (width_r - len(r))
                 for p, r in zip(prompt_ids, responses, strict=True)]
    return [str(text) for text in hf_tokenizer.batch_decode(sequences, skip_special_tokens=False)]


CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def chatml_tokenizer() -> Any:
    """A real Hugging Face fast tokenizer, built offline: byte-level (exact round trip), ChatML
    template, `<|im_end|>` as EOS and `<|endoftext|>` as pad, like Qwen2/2.5 instruct models."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokenizer = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    hf = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                 additional_special_tokens=["<|im_start|>"])
    hf.chat_template = CHATML_TEMPLATE
    return hf
