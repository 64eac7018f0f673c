"""What OpenRLHF sends to `--remote_rm_url http://127.0.0.1:8000/get_reward` (one sample per
request), and what it reads back. Start the server first: `rubricgate serve --rubric helpfulness`.

    openrlhf.cli.train_ppo_ray ... --remote_rm_url http://127.0.0.1:8000/get_reward
    # newer releases: --reward.remote_url http://127.0.0.1:8000/get_reward
    # per-sample rubric or principle: --label_key rubric (dataset column, e.g. "helpfulness"
    # or "principle: Refuse unsafe requests politely.")
"""

import json
import os
import urllib.request

url = os.environ.get("RUBRICGATE_URL", "http://127.0.0.1:8000") + "/get_reward"
prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
body = {"query": [prompt + "Paris.<|im_end|>"], "prompts": [prompt], "labels": ["helpfulness"]}
request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
reply = json.load(urllib.request.urlopen(request, timeout=180))
print(reply["rewards"], reply["scores"], sorted(reply["extra_logs"]))
