"""Latent mode through llama.cpp, side by side in one run (issue 16's three figures).

1. **step**: a latent step (embedding row in, ``result_norm`` out) vs a decode step (token in,
   logits out, greedy) on the same llama.cpp latent context, after the same prompt.
   Goal: latent / decode <= 1.0x.
2. **backends**: a latent step through llama.cpp vs through transformers (the same GGUF,
   de-quantized to fp32) at the same thread count. Goal: transformers / llama.cpp >= 3x.
3. **mas**: RecursiveMAS, 3 agents x 3 rounds (sequential, one shared model), latent vs text,
   both on llama.cpp, on exact-answer questions of the MAS evaluation. Goals: latent >= 2.4x
   faster end to end, >= 75 % fewer generated tokens; accuracy printed next to it.

    python benchmarks/latent_llamacpp.py --threads 1                      # embedded SmolLM2-135M
    python benchmarks/latent_llamacpp.py --threads 1 --gguf /work/models/qwen2.5-coder-0.5b-instruct-q4.gguf \\
        --skip backends --questions 3

Timings use ``time.perf_counter`` over ``--steps`` steps after one warm-up; on a shared
machine compare only the ratios printed by one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BLOCK = 8
PROMPT = "Question:\nA shop sells pens at 3 for 2 euros. How much do 12 pens cost?\n\nThink it through."


def _ids(backend) -> list[int]:
    text, prefix = backend.chat_text([{"role": "system", "content": "You are the Planner."},
                                      {"role": "user", "content": PROMPT}])
    return prefix + backend.tokenize(text)


def step_costs(model, steps: int) -> tuple[float, float]:
    """(ms per latent step, ms per decode step) on the model's latent context, timed in
    interleaved blocks of :data:`BLOCK` steps (8 latent, 8 decode, …) so load from other
    processes hits both alike; a block is how a rollout runs (embeddings switched once)."""
    import numpy as np

    b = model.latent()
    link = b.realignment()
    ids = _ids(b)
    with b.session():
        base = b.prefill([[ids]])
        lat = b.fork(base)
        lat_t = 0.0
        dec = b.fork(base)
        tok, pos, seq = int(np.argmax(dec.last_logits[0])), dec.lengths[0], dec.seqs[0]
        batch = b._tok
        dec_t = 0.0
        blocks = max(1, steps // BLOCK)
        for k in range(blocks + 1):  # block 0 warms both up and is not counted
            t0 = time.perf_counter()
            _, lat = b.latent_steps(lat, BLOCK, link)
            t1 = time.perf_counter()
            for _ in range(BLOCK):  # one token in, its logits out, greedy: what decode does per token
                batch.token[0] = tok
                b._slot(batch, 0, seq, pos, True)
                batch.n_tokens = 1
                b._decode(batch, embeddings=False)
                tok, pos = int(np.argmax(b._logits(0))), pos + 1
            t2 = time.perf_counter()
            if k:
                lat_t, dec_t = lat_t + (t1 - t0), dec_t + (t2 - t1)
    return lat_t / (blocks * BLOCK) * 1e3, dec_t / (blocks * BLOCK) * 1e3


def hf_latent_step(gguf_path: str, steps: int, threads: int) -> float:
    """ms per latent step through transformers on the same weights (fp32, CPU)."""
    import torch

    from nbmagic.llm.specs import load_model
    from nbmagic.mas.agent_pass import latent_backend

    torch.set_num_threads(threads)
    model = load_model(f"hf:{gguf_path}", device="cpu")
    b = latent_backend(model)
    link = b.realignment()
    with b.session():
        base = b.prefill([[_ids(b)]])
        b.latent_steps(b.fork(base), 2, link)
        t0 = time.perf_counter()
        b.latent_steps(b.fork(base), steps, link)
        return (time.perf_counter() - t0) / steps * 1e3


def mas_side_by_side(model, questions: int, rounds: int, latent_steps: int, max_new: int, message: int) -> None:
    from nbmagic.eval.mas_suite import make_questions, score
    from nbmagic.mas.system import RecursiveMAS

    qs = make_questions(questions)
    rows = {}
    for mode in ("latent", "text"):
        mas = RecursiveMAS(model=model, pattern="sequential", rounds=rounds, latent_steps=latent_steps,
                           mode=mode, max_new_tokens=max_new, message_tokens=message)
        mas.run("Warm-up: say ok.", max_new_tokens=2) if mode == "latent" else None
        seconds = tokens = correct = 0.0
        for q in qs:
            t0 = time.perf_counter()
            res = mas.run(q.question)
            seconds += time.perf_counter() - t0
            tokens += res.generated_tokens
            correct += score(q, res.answer)
        rows[mode] = (seconds / len(qs), tokens / len(qs), correct, len(qs))
    print(f"\nRecursiveMAS sequential, 3 agents x {rounds} rounds, {latent_steps} latent steps, answer cap {max_new}, "
          f"message cap {message}, {len(qs)} questions, llama.cpp for both")
    print(f"{'mode':7} {'s/question':>10} {'gen tok/q':>10} {'accuracy':>9}")
    for mode, (s, t, c, n) in rows.items():
        print(f"{mode:7} {s:10.2f} {t:10.1f} {f'{c:.0f}/{n}':>9}")
    speed = rows["text"][0] / rows["latent"][0]
    fewer = 100 * (1 - rows["latent"][1] / max(rows["text"][1], 1e-9))
    print(f"latent vs text: {speed:.2f}x faster   goal >= 2.4x   {'met' if speed >= 2.4 else 'NOT met'}")
    print(f"generated tokens: {fewer:.1f}% fewer in latent mode   goal >= 75%   {'met' if fewer >= 75 else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gguf", default=None, help="GGUF file (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--skip", default="", help="comma-separated parts to skip: step, backends, mas")
    p.add_argument("--questions", type=int, default=12)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--latent-steps", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--message-tokens", type=int, default=64)
    args = p.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    from nbmagic.llm.embedded import embedded_gguf_path
    from nbmagic.llm.specs import load_model

    path = args.gguf or str(embedded_gguf_path())
    model = load_model(f"gguf:{path}", n_threads=args.threads, n_threads_batch=args.threads)
    print(f"model: {Path(path).name}; threads {args.threads}; load average {os.getloadavg()[0]:.1f}")
    latent_ms = None
    if "step" not in skip:
        latent_ms, decode_ms = step_costs(model, args.steps)
        r = latent_ms / decode_ms
        print(f"llama.cpp latent step {latent_ms:.1f} ms, decode step {decode_ms:.1f} ms: latent/decode {r:.2f}x   "
              f"goal <= 1.0x   {'met' if r <= 1.0 else 'NOT met'}")
    if "backends" not in skip:
        if latent_ms is None:
            latent_ms, _ = step_costs(model, args.steps)
        hf_ms = hf_latent_step(path, args.steps, args.threads)
        r = hf_ms / latent_ms
        print(f"latent step: transformers {hf_ms:.1f} ms vs llama.cpp {latent_ms:.1f} ms at {args.threads} thread(s): "
              f"{r:.1f}x   goal >= 3x   {'met' if r >= 3 else 'NOT met'}")
    if "mas" not in skip:
        mas_side_by_side(model, args.questions, args.rounds, args.latent_steps, args.max_new_tokens,
                         args.message_tokens)
    model.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
