"""The scripted judge and meta-judge of `tests/refine/support.py` on a local port, for demos.

    .venv/bin/python -m tests.refine.demo_server          # prints the base URL; Ctrl-C stops it

Judge: `openai:judge-model` (rates `detailed` by length, so padding games `thorough-answers`).
Meta-judge: `openai:meta-model` (proposes `no_padding`; `--bad` proposes `short_answers` instead).
Pass the printed URL as `--judge-base-url` and `--meta-judge-base-url`.
"""

from __future__ import annotations

import argparse
import json
import time

from tests.refine.support import BAD, Scripts
from tests.support.openai_server import ScriptedJudgeServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bad", action="store_true", help="the meta-judge proposes a change that breaks accuracy")
    args = parser.parse_args()
    scripts = Scripts()
    if args.bad:
        scripts.meta_replies = [json.dumps(BAD)]
    with ScriptedJudgeServer(scripts) as server:
        print(server.base_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
