"""Acceptance bench for authoring: a generated-and-filtered rubric vs the generic ones, same judge.

Usage:
    python bench/authoring.py [--judge llamacpp:default] [--generator SPEC] [--train 40] [--eval 100]
                              [--filter pointwise|pairwise] [--tries 3] [--out DIR]

1. Split LLMBar (`../shared/data/llmbar/pairs.jsonl`): the eval pairs are exactly what
   `rubricgate eval --limit EVAL --seed 0` samples; the training pairs are a seeded sample of the rest.
2. `rubricgate rubric contrast` on the training pairs (writer: the generator; filter: the judge),
   `--distill llmbar-distilled`: one general rubric from the kept instance rubrics.
3. `rubricgate eval` on the eval pairs with the distilled rubric and with the shipped generic
   `helpfulness` and `instruction-following` rubrics: same judge, same protocol, same pairs.

Prints every command it runs and a table of accuracies (95% bootstrap intervals).
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rubricgate.interfaces.evaluation import read_pairs, select_pairs

ROOT = Path(__file__).resolve().parent.parent
LLMBAR = ROOT.parent / "shared" / "data" / "llmbar" / "pairs.jsonl"
RUBRICGATE = str(Path(sys.executable).with_name("rubricgate"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, default=LLMBAR)
    parser.add_argument("--judge", default="llamacpp:default")
    parser.add_argument("--generator", default=None, help="default: the judge")
    parser.add_argument("--train", type=int, default=40)
    parser.add_argument("--eval", type=int, default=100)
    parser.add_argument("--filter", default="pointwise", choices=("pointwise", "pairwise"))
    parser.add_argument("--tries", type=int, default=3)
    parser.add_argument("--votes", type=int, default=1)
    parser.add_argument("--mode", default="pointwise", choices=("pointwise", "pairwise"))
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "rubricgate-authoring-bench")
    parser.add_argument("--cache", default=None, help="cache URL/path (default: OUT/cache.db)")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.cache or str(args.out / "cache.db")
    pairs = read_pairs(args.pairs)
    evaluated = select_pairs(pairs, args.eval, seed=0)
    held_out = {p.id for p in evaluated}
    rest = [p for p in pairs if p.id not in held_out]
    train = sorted(random.Random("authoring-train").sample(range(len(rest)), min(args.train, len(rest))))
    train_file = args.out / "train.jsonl"
    train_file.write_text("".join(rest[i].model_dump_json(exclude_none=True) + "\n" for i in train))
    print(f"{len(evaluated)} eval pairs (rubricgate eval --limit {args.eval} --seed 0), {len(train)} training pairs "
          f"from the other {len(rest)} -> {train_file}")

    generated = args.out / "generated"
    contrast = [RUBRICGATE, "rubric", "contrast", str(train_file), "--out", str(generated), "--judge", args.judge,
                "--filter", args.filter, "--tries", str(args.tries), "--distill", "llmbar-distilled",
                "--cache", cache, "--force", "--json"]
    if args.generator:
        contrast += ["--generator", args.generator]
    report = json.loads(_run(contrast))
    print(f"contrast: kept {report['kept']}, rejected {report['rejected']}, reasons {report['rejection_reasons']}")

    rows = []
    for rubric in (str(generated / "llmbar-distilled.yaml"), "helpfulness", "instruction-following"):
        command = [RUBRICGATE, "eval", str(args.pairs), "--rubric", rubric, "--judge", args.judge, "--limit",
                   str(args.eval), "--seed", "0", "--votes", str(args.votes), "--mode", args.mode, "--cache", cache,
                   "--deadline", "3600", "--json"]  # a long deadline: a busy 2-core box must not time items out
        result = json.loads(_run(command, ok_codes=(0, 1)))
        [variant] = result["variants"]
        rows.append((Path(rubric).stem, variant["rubric"], variant["accuracy"], variant["ci"], variant["unscorable"],
                     variant["wall_s"]))
    print(f"\nLLMBar, {args.eval} pairs, judge {args.judge}, {args.mode}, {args.votes} vote(s):")
    print(f"{'rubric':<24} {'version':<36} {'accuracy':>8}  {'95% CI':<16} {'unscorable':>10} {'wall':>7}")
    for name, ref, accuracy, ci, unscorable, wall in rows:
        shown_ci = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "-"
        print(f"{name:<24} {ref:<36} {accuracy if accuracy is not None else float('nan'):>8.3f}  {shown_ci:<16} "
              f"{unscorable:>10} {wall:>6.0f}s")


def _run(command: list[str], ok_codes: tuple[int, ...] = (0,)) -> str:
    shown = " ".join(shlex.quote(part if part != RUBRICGATE else "rubricgate") for part in command)
    print(f"$ {shown}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode not in ok_codes:
        sys.exit(f"command failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    print(f"  ({time.perf_counter() - started:.0f}s)", flush=True)
    return done.stdout


if __name__ == "__main__":
    main()
