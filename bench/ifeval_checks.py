"""IFEval strict accuracy of rubricgate's deterministic checks on GPT-4's responses.

Usage: python bench/ifeval_checks.py [--data ../shared/data/ifeval]
Each prompt becomes an instance rubric whose hard rules are `ifeval` checks (no judge); a prompt
passes when every rule passes. The paper reports 76.9 % strict prompt-level and 83.6 %
instruction-level accuracy for GPT-4.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from rubricgate.library.rubric_files import parse_rubric
from rubricgate.scoring.checks import run_check

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ifeval"


def instance_rubric(row: dict) -> dict:
    """The IFEval constraints of one prompt as a rubric of deterministic hard rules."""
    criteria = []
    for i, (instruction, kwargs) in enumerate(zip(row["instruction_id_list"], row["kwargs"], strict=True)):
        criteria.append({"id": f"c{i}_{instruction.replace(':', '_')}", "kind": "hard_rule",
                         "text": f"The response follows {instruction}.",
                         "check": {"type": "ifeval", "instruction": instruction, "kwargs": kwargs,
                                   "prompt": row["prompt"]}})
    return {"id": f"ifeval-{row['key']}", "criteria": criteria}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    inputs = {json.loads(l)["prompt"]: json.loads(l) for l in (args.data / "ifeval_input_data.jsonl").open()}
    responses = [json.loads(l) for l in (args.data / "ifeval_gpt4_responses.jsonl").open()]
    started = time.perf_counter()
    prompts_passed = prompts = instructions = instructions_passed = 0
    by_kind: Counter[str] = Counter()
    failed_kind: Counter[str] = Counter()
    for row in responses:
        spec = inputs.get(row["prompt"])
        if spec is None:
            continue
        rubric = parse_rubric(instance_rubric(spec))
        results = [run_check(c.check, row["response"])[0] for c in rubric.criteria if c.check is not None]
        prompts += 1
        prompts_passed += all(results)
        instructions += len(results)
        instructions_passed += sum(results)
        for instruction, ok in zip(spec["instruction_id_list"], results, strict=True):
            by_kind[instruction] += 1
            failed_kind[instruction] += not ok
    seconds = time.perf_counter() - started
    print(f"prompts evaluated: {prompts} of {len(responses)} (instruction kinds covered: {len(by_kind)} of 25)")
    print(f"strict prompt-level accuracy:      {prompts_passed / prompts:.1%}   (paper, GPT-4: 76.9 %)")
    print(f"strict instruction-level accuracy: {instructions_passed / instructions:.1%}   (paper, GPT-4: 83.6 %)")
    print(f"time: {seconds:.2f} s for {instructions} checks ({seconds / instructions * 1e3:.2f} ms/check)")
    for kind, count in sorted(by_kind.items()):
        print(f"  {kind:<45} {count - failed_kind[kind]:>4}/{count:<4}")


if __name__ == "__main__":
    main()
