"""Decode speed of the default-model candidates through llama.cpp, side by side.

The embedded SmolLM2-135M (the offline default) against the coder GGUFs the hub default is
chosen from: the Qwen2.5-Coder-0.5B-Instruct Q4 file this project measures with
(``/work/models/...`` or ``--gguf``), and the hub default itself when it is in the
huggingface_hub cache. Calls are interleaved (a, b, a, b, ...) so load from other processes
falls on all alike; figures are medians. The ratio of file sizes predicts the ratio of decode
speeds on a CPU (decoding is memory-bound), which is how the 1.5B default's speed is estimated
where it cannot be downloaded.

    python benchmarks/default_models.py
    python benchmarks/default_models.py --gguf /path/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf --rounds 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.backends_real import measure
from nbmagic.llm.base import ChatModel
from nbmagic.llm.embedded import embedded_gguf_path
from nbmagic.llm.hub_default import CODER_GGUF
from nbmagic.llm.hub_download import cached_file
from nbmagic.llm.specs import load_model

CODER_05B = Path("/work/models/qwen2.5-coder-0.5b-instruct-q4.gguf")
QUESTIONS = [
    "Write a pandas one-liner that sums the revenue column of df by month.",
    "Write a Python function that returns the n-th Fibonacci number.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--gguf", action="append", default=None, help="another GGUF to measure (repeatable)")
    args = parser.parse_args()
    paths: dict[str, Path] = {}
    if (p := embedded_gguf_path()) is not None:
        paths["embedded SmolLM2-135M"] = p
    if CODER_05B.is_file():
        paths["Qwen2.5-Coder-0.5B Q4"] = CODER_05B
    if (p := cached_file(CODER_GGUF)) is not None:
        paths["hub default 1.5B Q4_K_M"] = p
    for extra in args.gguf or []:
        paths[Path(extra).name] = Path(extra)
    models: dict[str, ChatModel] = {}
    load: dict[str, float] = {}
    for name, path in paths.items():
        t0 = time.perf_counter()
        models[name] = load_model(f"gguf:{path}", n_ctx=2048)
        load[name] = time.perf_counter() - t0
        models[name].chat("hi", max_tokens=2, temperature=0)  # warm-up
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for q in QUESTIONS:
            for name, m in models.items():
                rows[name].append(measure(m, q, args.max_tokens))

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in rows[name])

    print(f"llama.cpp, {args.rounds} rounds x {len(QUESTIONS)} questions, <= {args.max_tokens} tokens, temperature 0 "
          "(medians)")
    print(f"{'model':<26} {'file MB':>8} {'load s':>7} {'first token s':>14} {'decode tok/s':>13} {'tokens':>7}")
    for name in models:
        print(f"{name:<26} {paths[name].stat().st_size / 1e6:>8.0f} {load[name]:>7.2f} {med(name, 'ttft'):>14.3f} "
              f"{med(name, 'decode_tps'):>13.1f} {med(name, 'tokens'):>7.0f}")
    for m in models.values():
        m.close()


if __name__ == "__main__":
    main()
