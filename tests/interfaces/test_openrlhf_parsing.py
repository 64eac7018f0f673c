from __future__ import annotations

import pytest

from rubricgate.interfaces.openrlhf import LabelSpec, parse_label, response_from_query

QWEN = "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
LLAMA3 = ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi?<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n")


@pytest.mark.parametrize(
    ("query", "prompt", "expected"),
    [
        (QWEN + "Hello there!<|im_end|>", QWEN, "Hello there!"),
        (QWEN + "Hello<|im_end|><|endoftext|><|endoftext|><|endoftext|>", QWEN, "Hello"),
        ("<pad><pad>" + QWEN + "Hello<|im_end|>", QWEN, "Hello"),
        (LLAMA3 + "Hey!<|eot_id|>", LLAMA3, "Hey!"),
        ("<bos><start_of_turn>user\nHi?<end_of_turn>\n<start_of_turn>model\nYo<end_of_turn>\n<eos>",
         "<bos><start_of_turn>user\nHi?<end_of_turn>\n<start_of_turn>model\n", "Yo"),
        ("Question: 2+2? Answer: 4</s>", "Question: 2+2? Answer:", "4"),
        ("no prompt given", "", "no prompt given"),
    ],
)
def test_response_is_recovered_from_the_query(query: str, prompt: str, expected: str) -> None:
    assert response_from_query(query, prompt) == expected


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("", LabelSpec()),
        (None, LabelSpec()),
        ("helpfulness", LabelSpec(rubric="helpfulness")),
        ("rubric: factual-qa", LabelSpec(rubric="factual-qa")),
        ("principle: Be brief.", LabelSpec(principle="Be brief.")),
        ("Answer politely.", LabelSpec(principle="Answer politely.")),
        ('{"rubric": "factual-qa", "reference": "Paris"}', LabelSpec(rubric="factual-qa", reference="Paris")),
    ],
)
def test_labels(label: str | None, expected: LabelSpec) -> None:
    assert parse_label(label, {"helpfulness", "factual-qa"}) == expected
