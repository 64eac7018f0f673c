"""A tiny random Llama policy and a locally trained tokenizer, saved to a folder.

Stands in for a real policy (say `Qwen/Qwen2.5-0.5B-Instruct`) so `trl_grpo.py` and the test
suite run a real GRPOTrainer offline on a CPU in seconds: no hub download, no GPU.
"""

from __future__ import annotations

import itertools
from pathlib import Path

_WORDS = ("the a one two three cat dog sky sun rain tree river answer question because please "
          "short long clear kind helpful yes no maybe water light blue green fast slow why how "
          "what when where is are was be explain tell me write list give name thanks sorry").split()

# Turns: `<s>role: text</s>`; TRL appends the generation prompt and parses what follows.
_CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant:{% endif %}"
)


def tiny_policy(folder: str | Path) -> str:
    """Build, save and return the path of a 2-layer random Llama with its own BPE tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    # Byte-level BPE trained on a few hundred generated lines: any text stays encodable.
    corpus = [" ".join(w) for w in itertools.islice(itertools.permutations(_WORDS, 6), 0, 60_000, 150)]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", chat_template=_CHAT_TEMPLATE)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
