#!/usr/bin/env bash
# Walkthrough: bad input gets one clear line and exit code 2, never a traceback.
set -uo pipefail
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
expect() {  # expect CODE PATTERN -- command...
  local code="$1" pattern="$2"; shift 3
  local err; err="$("$@" 2>&1 >/dev/null)"; local got=$?
  if [ "$got" -ne "$code" ] || ! grep -q -- "$pattern" <<<"$err" || grep -q Traceback <<<"$err"; then
    echo "FAIL: $* -> exit $got: $err"; exit 1
  fi
  echo "ok ($got): $(head -1 <<<"$err")"
}
printf '{"prompt": "a", "response": "b"}\n{oops\n' > "$work/bad.jsonl"
expect 2 "does not exist" -- rubricgate score --rubric helpfulness --input "$work/missing.jsonl" --cache none
expect 2 "bad.jsonl:2: not valid JSON" -- rubricgate score --rubric helpfulness --input "$work/bad.jsonl" --cache none
expect 2 "unknown rubric" -- rubricgate score --rubric nope --prompt a --response b --cache none
expect 2 "bad judge" -- rubricgate score --judge gpt4 --rubric helpfulness --prompt a --response b --cache none
expect 1 "unscorable" -- rubricgate score --judge fake:garbage --rubric helpfulness --prompt a --response b --cache none
