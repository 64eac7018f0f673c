#!/usr/bin/env bash
# Walkthrough: score the shipped example with the embedded judge, rerun from the cache,
# raise the votes, inspect the cache. Run from anywhere; uses a throwaway cache file.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export RUBRICGATE_CACHE="$work/cache.db"

echo "== 1. score the example with the embedded judge (3 votes)"
rubricgate score --rubric helpfulness --input "$here/examples/chat.jsonl" --output "$work/scored.jsonl"
test "$(wc -l < "$work/scored.jsonl")" -eq 6

echo "== 2. the same command again: every vote comes from the cache"
rubricgate score --rubric helpfulness --input "$here/examples/chat.jsonl" --output "$work/again.jsonl" --json > "$work/again.json"
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
first = [json.loads(l) for l in open(f"{work}/scored.jsonl")]
again = json.load(open(f"{work}/again.json"))
assert all(r["cached"] and r["judge_calls"] == 0 for r in again), "rerun called the judge"
assert [r["reward"] for r in first] == [r["reward"] for r in again], "rerun changed a reward"
print("rerun: all cached, rewards identical")
PY

echo "== 3. five votes: only the two new votes per item reach the judge"
rubricgate score --rubric helpfulness --input "$here/examples/chat.jsonl" --votes 5 --json > "$work/five.json"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert all(x['judge_calls']==2 for x in r), r; print('votes 5: 2 new judge calls per item')" "$work/five.json"

echo "== 4. one item from the command line"
rubricgate score --rubric concise-writing --prompt "Say hi." --response "Hi!" --votes 1

echo "== 5. the cache"
rubricgate cache stats
