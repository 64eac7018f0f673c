"""rubricgate as verl's custom reward function. verl config (Hydra overrides):

    custom_reward_function.path=$(python -c "import rubricgate.integrations.verl as m; print(m.__file__)")
    custom_reward_function.name=compute_score     # compute_score_async for the reward loop
    +custom_reward_function.reward_kwargs.rubric=helpfulness
    +custom_reward_function.reward_kwargs.judge=litellm:openai/Qwen/Qwen3-8B
    +custom_reward_function.reward_kwargs.judge_base_url=http://judge-host:8000/v1

verl does not pass the prompt: put it in each parquet row's extra_info, e.g.
    "extra_info": {"prompt": [{"role": "user", "content": "Explain DNS to a child."}]}
"""

from rubricgate.integrations.verl import compute_score

# What verl's naive reward manager does for every rollout (keyword arguments, plus reward_kwargs):
result = compute_score(
    data_source="chat",
    solution_str="DNS is the internet's phone book: it turns names like example.com into addresses.",
    ground_truth="",
    extra_info={"prompt": "Explain DNS to a child.", "rubric": "helpfulness"},
    judge="fake:best",  # scripted demo judge; drop it for RUBRICGATE_JUDGE or the embedded model
    cache="none",
)
print(result["score"], result["unscorable"], result["rubric"])
