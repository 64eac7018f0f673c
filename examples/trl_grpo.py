"""GRPO with a rubric reward: TRL's GRPOTrainer scores every completion against `helpfulness`.

    python examples/trl_grpo.py     # offline, CPU, a few seconds (tiny random policy)

For real training, set `POLICY` to a model id (e.g. "Qwen/Qwen2.5-0.5B-Instruct") and point the
judge at a served model: `rubric_reward("helpfulness", judge="litellm:hosted_vllm/Qwen/Qwen3-8B",
judge_base_url="http://localhost:8100/v1")`. The embedded default judge (`llamacpp:default`) is a
smoke-test judge. RUBRICGATE_JUDGE picks the judge here (the test suite uses `fake:alternate`).
"""

import os
import tempfile

from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from _tiny_policy import tiny_policy  # stand-in policy: 2-layer random Llama, local tokenizer
from rubricgate.integrations.trl import rubric_reward

POLICY = tiny_policy(tempfile.mkdtemp())
reward = rubric_reward("helpfulness", judge=os.environ.get("RUBRICGATE_JUDGE", "llamacpp:default"))

questions = ["How do I boil an egg?", "Why is the sky blue?", "Name a fast animal.", "What is rain?"]
dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": q}] for q in questions]})
args = GRPOConfig(
    output_dir=tempfile.mkdtemp(), max_steps=2, per_device_train_batch_size=4, num_generations=4,
    max_completion_length=16, logging_steps=1, report_to=[], save_strategy="no",
    use_cpu=True, bf16=False, activation_checkpointing=False,  # CPU-friendly; drop these on a GPU
)
trainer = GRPOTrainer(model=POLICY, reward_funcs=[reward], args=args, train_dataset=dataset)
trainer.train()
for entry in trainer.state.log_history:
    print({k: v for k, v in entry.items() if k.startswith(("rewards/", "rubricgate/", "reward"))})
