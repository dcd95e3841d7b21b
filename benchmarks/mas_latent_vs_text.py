"""RecursiveMAS end to end: latent mode vs text mode (Recursive-TextMAS), side by side.

Same model, same question, same recursion: 3 agents (Planner -> Critic -> Solver, one
shared model) x 3 rounds. Latent mode passes m = 32 latent thoughts per agent and decodes
only the final answer; text mode passes 128-token text messages between agents. Both
decode a final answer of the same length.

The model is a ~0.5 B-parameter Qwen2-shaped model (Qwen2.5-0.5B's config: 24 layers,
hidden 896, vocabulary 151,936) with random weights built from its config, and the
byte-level tokenizer of the test fixtures: nothing is downloaded. Random weights never
emit EOS, so every text message runs to its 128-token cap, which is the intended
comparison. (Random tokens above the byte range decode to nothing, so text-mode prompts do
not grow with the messages as they would with a real model: that favours text mode.)

Goals: latent >= 2.4x faster end to end and >= 75% fewer generated tokens.

    python benchmarks/mas_latent_vs_text.py                  # the 0.5 B model on CPU (minutes)
    python benchmarks/mas_latent_vs_text.py --quick          # a small model, seconds
    python benchmarks/mas_latent_vs_text.py --device cuda    # bf16 on a GPU
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.random_models import QUICK, QWEN2_05B, build_random_qwen2  # noqa: E402
from nbmagic.events import EventRecorder, LatentStep  # noqa: E402
from nbmagic.llm.hf import HFChatModel  # noqa: E402
from nbmagic.mas.system import MASResult, RecursiveMAS  # noqa: E402

QUESTION = (
    "A train leaves at 9:40 and arrives at 13:05 after travelling 273 km. "
    "What was its average speed in km/h? Explain briefly."
)


def build(shape: dict, device: str, dtype: torch.dtype) -> HFChatModel:
    from tests.fixtures.hf_models import build_tokenizer

    return build_random_qwen2(shape, device, dtype, build_tokenizer())


def run(model: HFChatModel, mode: str, args: argparse.Namespace, *, warmup: bool = False
        ) -> tuple[MASResult, float, int]:
    mas = RecursiveMAS(
        model=model, rounds=1 if warmup else args.rounds, latent_steps=4 if warmup else args.latent_steps,
        mode=mode, message_tokens=4 if warmup else args.message_tokens,
        max_new_tokens=4 if warmup else args.max_new_tokens,
    )
    rec = EventRecorder()
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    result = mas.run(QUESTION, on_event=rec)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return result, time.perf_counter() - t0, len(rec.of(LatentStep))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small model (4 layers, hidden 256)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, help="default: float32 on CPU, bfloat16 on CUDA")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--latent-steps", type=int, default=32)
    p.add_argument("--message-tokens", type=int, default=128)
    p.add_argument("--max-new-tokens", type=int, default=128, help="final answer length (both modes)")
    p.add_argument("--repeats", type=int, default=1,
                   help="interleaved latent/text runs; the fastest of each is compared (shared machines)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if args.device.startswith("cuda") else torch.float32)
    shape = QUICK if args.quick else QWEN2_05B

    t0 = time.perf_counter()
    model = build(shape, args.device, dtype)
    params = sum(p.numel() for p in model.model.parameters())
    print(f"model: random Qwen2 shape, {params / 1e6:.0f} M parameters, {shape['num_hidden_layers']} layers, "
          f"hidden {shape['hidden_size']}, vocab {shape['vocab_size']}; {args.device} {str(dtype).replace('torch.', '')}, "
          f"threads {torch.get_num_threads()}; built in {time.perf_counter() - t0:.1f} s")
    print(f"system: planner -> critic -> solver on one model, {args.rounds} rounds; latent m = {args.latent_steps}; "
          f"text messages <= {args.message_tokens} tokens; final answer <= {args.max_new_tokens} tokens")
    for mode in ("latent", "text"):  # warm up kernels and caches (also computes the realignment)
        run(model, mode, args, warmup=True)

    times: dict[str, list[float]] = {"latent": [], "text": []}
    for _ in range(max(1, args.repeats)):  # interleaved, so a load change hits both modes
        latent, t_latent, steps = run(model, "latent", args)
        text, t_text, _ = run(model, "text", args)
        times["latent"].append(t_latent)
        times["text"].append(t_text)
    t_latent, t_text = min(times["latent"]), min(times["text"])
    if args.repeats > 1:
        print("runs (s): " + "; ".join(f"{k} " + ", ".join(f"{t:.1f}" for t in v) for k, v in times.items()))

    def row(name: str, r: MASResult, secs: float, latent_steps: int) -> str:
        return (f"{name:<7} {secs:>9.2f} {r.generated_tokens:>10} {latent_steps:>8} {r.usage.prompt_tokens:>9} "
                f"{r.usage.calls:>6}")

    print()
    print(f"{'mode':<7} {'seconds':>9} {'generated':>10} {'latent':>8} {'prompt':>9} {'calls':>6}")
    print(row("latent", latent, t_latent, steps))
    print(row("text", text, t_text, 0))
    speedup = t_text / t_latent
    fewer = 1 - latent.generated_tokens / max(1, text.generated_tokens)
    print()
    print(f"speed-up (text / latent seconds): {speedup:.2f}x   goal >= 2.4x   {'met' if speedup >= 2.4 else 'NOT met'}")
    print(f"generated tokens: {fewer:.1%} fewer in latent mode   goal >= 75%   {'met' if fewer >= 0.75 else 'NOT met'}")
    per_agent = ", ".join(f"{a.name} {a.seconds:.2f}s" for a in latent.agents)
    print(f"latent per agent: {per_agent}")
    per_agent = ", ".join(f"{a.name} {a.seconds:.2f}s/{a.tokens} tok" for a in text.agents)
    print(f"text per agent:   {per_agent}")


if __name__ == "__main__":
    main()
