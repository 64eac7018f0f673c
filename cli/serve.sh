#!/usr/bin/env bash
# Walkthrough: serve rewards over HTTP with the embedded judge, call both endpoints, stop cleanly.
set -euo pipefail
work="$(mktemp -d)"
port="${RUBRICGATE_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
export RUBRICGATE_CACHE="$work/cache.db"
rubricgate serve --rubric helpfulness --judge llamacpp:default --port "$port" --votes 1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT

# http GET|POST PATH [JSON]: a tiny client (python's urllib), so the walkthrough needs no curl
http() {
  python3 - "$port" "$@" <<'PY'
import sys, urllib.request
port, method, path = sys.argv[1:4]
data = sys.argv[4].encode() if len(sys.argv) > 4 else None
req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                             headers={"content-type": "application/json"})
print(urllib.request.urlopen(req, timeout=120).read().decode())
PY
}

for _ in $(seq 1 120); do
  http GET /healthz >/dev/null 2>&1 && break
  sleep 0.5
done
echo "== healthz"; http GET /healthz

echo "== POST /v1/reward"
http POST /v1/reward '{
  "items": [{"id": "a", "prompt": "What is the capital of France?", "response": "Paris."},
            {"id": "b", "prompt": "What is the capital of France?", "response": "I like turtles."}]}' \
  | python3 -c 'import json,sys; r=json.load(sys.stdin)["results"]; assert [x["id"] for x in r]==["a","b"]; [print(x["id"], x["reward"], x["rubric"]) for x in r]'

echo "== POST /get_reward (OpenRLHF)"
http POST /get_reward '{
  "query": ["<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\nHi!<|im_end|>"],
  "prompts": ["<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n"], "labels": ["helpfulness"]}' \
  | python3 -c 'import json,sys; d=json.load(sys.stdin); assert len(d["rewards"])==1 and set(d["extra_logs"])>={"unscorable"}; print(d)'

echo "== metrics"; http GET /metrics | grep -E '^rubricgate_(items|judge_calls)_total'
