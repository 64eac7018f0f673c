"""A tiny random Llama judge with a locally trained tokenizer, saved to a folder, fully offline.

It stands in for a real judge model (say `Qwen/Qwen3-8B`) so vLLM's engine and server run on a
CPU in seconds. Its verdicts are noise: tests assert structure, token counts and repeatability.

Two deliberate touches make it behave like a terse judge instead of a babbling one:
- the byte-level BPE vocabulary (512) is trained on the shipped judge template, rubrics and
  examples, so a rubric prompt is ~1,000 tokens and fits the 4,096-token context;
- a constant channel in every token embedding, read only by the `"` row of the output layer,
  raises the logit of `"`, so the model closes JSON strings after a few tokens (a random model
  otherwise writes rationales until `max_tokens` and every verdict is truncated). Every other
  logit stays random and context-dependent, so label probabilities differ between items.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONTEXT_TOKENS = 4096
"""max_position_embeddings; engines use it as max_model_len."""

# Turns: `<s>role: text</s>`, then `<s>assistant:` as the generation prompt.
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant:{% endif %}"
)
_QUOTE_BOOST = 6.0
"""Extra logit for `"` (about e^6 = 400x its random share): strings close after a few tokens."""


def _corpus() -> list[str]:
    """A few hundred lines: the judge template, shipped rubrics, example items, JSON verdicts."""
    lines: list[str] = []
    for pattern in ("prompts/*.md", "rubrics/*.yaml", "examples/*.jsonl"):
        for path in sorted(REPO.glob(pattern)):
            lines += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    ids = ("correct_answer", "clarity", "brevity", "direct_answer", "helpful")
    labels = ("pass", "fail", "1", "2", "3", "4", "5")
    lines += [json.dumps({c: {"rationale": "", "score": s}}, separators=(",", ":"))
              for c, s in zip(itertools.cycle(ids), itertools.islice(itertools.cycle(labels), 70))]
    return lines


def tiny_judge(folder: str | Path, seed: int = 0) -> str:
    """Build, save and return the path of a 2-layer random Llama with its own BPE tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(_corpus(), trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", chat_template=CHAT_TEMPLATE)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=CONTEXT_TOKENS,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # Channel 0 carries a constant that only the `"` output row reads (see module docstring).
        model.model.embed_tokens.weight[:, 0] = 0.1
        model.lm_head.weight[:, 0] = 0.0
        normalised = 0.1 / float(model.model.embed_tokens.weight[:, 1:].pow(2).mean().add(0.01 / 128).sqrt())
        model.lm_head.weight[core.token_to_id('"'), 0] = _QUOTE_BOOST / normalised
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
