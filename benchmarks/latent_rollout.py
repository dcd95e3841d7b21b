"""Latent rollout: seed-style full recompute vs KV-cached rollout vs ``generate`` of m tokens.

Same model, same ~64-token prompt, for m latent steps / new tokens (default 16, 32, 80):

* recompute — the seed article's loop (and the released inference, ``use_cache=False``):
  every step re-runs the whole growing embedding sequence through the full model with
  ``output_hidden_states=True``, takes the last hidden state, appends it as an embedding.
* cached    — :func:`nbmagic.mas.latent.prefill` + :func:`latent_rollout`: one token-forward
  per step on the KV cache, base decoder only (no LM head).
* generate  — ``model.generate`` of exactly m tokens (greedy), the cost of thinking in text.

The model is a ~0.5 B-parameter Qwen2-shaped model (Qwen2.5-0.5B's config) with random
weights built from its config: nothing is downloaded. Goals: cached >= 10x faster than
recompute at m = 80; a cached latent step <= 0.9x a decode step.

    python benchmarks/latent_rollout.py                # m = 16, 32, 80 (recompute at 80 takes minutes on CPU)
    python benchmarks/latent_rollout.py --quick        # m = 16 with a smaller model, seconds
    python benchmarks/latent_rollout.py --sizes 16,32 --skip-recompute
    python benchmarks/latent_rollout.py --device cuda  # bf16 on a GPU
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from nbmagic.llm.devices import detect_device, dtype_name, torch_dtype
from nbmagic.llm.hf import HFChatModel
from nbmagic.mas import latent as L
from nbmagic.mas.links import InnerLink

QWEN2_05B = dict(  # Qwen2.5-0.5B-Instruct's shape
    vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
    num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
    rope_theta=1_000_000.0, tie_word_embeddings=True, rms_norm_eps=1e-6,
)
QUICK = dict(QWEN2_05B, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
             num_attention_heads=4, num_key_value_heads=2)


def build(shape: dict, device: str, dtype: torch.dtype) -> HFChatModel:
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(Qwen2Config(**shape), dtype=dtype)
    return HFChatModel.wrap(model.to(device), tokenizer=None, name="random-qwen2")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def recompute(m: HFChatModel, ids: torch.Tensor, steps: int, link) -> torch.Tensor:
    """The seed's loop: the whole sequence every step, full model, no cache."""
    e = m.embed_ids(ids)
    out = []
    for _ in range(steps):
        h = m.model(inputs_embeds=e, output_hidden_states=True, use_cache=False).hidden_states[-1][:, -1]
        out.append(h)
        e = torch.cat([e, link(h.float()).to(e.dtype)[:, None]], dim=1)
    return torch.stack(out, 1)


def cached(m: HFChatModel, ids: torch.Tensor, steps: int, link) -> torch.Tensor:
    state = L.prefill(m, m.embed_ids(ids), torch.ones_like(ids))
    thoughts, _ = L.latent_rollout(m, state, steps, link)
    return thoughts


def generate(m: HFChatModel, ids: torch.Tensor, steps: int) -> torch.Tensor:
    return m.model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=steps, min_new_tokens=steps,
        do_sample=False, pad_token_id=0, eos_token_id=None,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="16,32,80", help="comma-separated m values")
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--device", default=None, help="cpu, cuda, mps, ... (default: auto)")
    ap.add_argument("--dtype", default=None, help="default: per device (fp32 on CPU, bf16 on CUDA)")
    ap.add_argument("--quick", action="store_true", help="a 4-layer model and m=16: a smoke run")
    ap.add_argument("--skip-recompute", action="store_true", help="leave out the slow baseline")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [16] if args.quick and args.sizes == "16,32,80" else [int(s) for s in args.sizes.split(",")]
    info = detect_device(args.device)
    dtype = torch_dtype(dtype_name(args.dtype, info))
    t0 = time.perf_counter()
    m = build(QUICK if args.quick else QWEN2_05B, info.torch_device, dtype)
    n_params = sum(p.numel() for p in m.model.parameters())
    print(f"model: random Qwen2 shape, {n_params / 1e6:.0f} M params, {m.dtype}, {info.describe()}; "
          f"built in {time.perf_counter() - t0:.1f} s; torch threads {torch.get_num_threads()}")
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 150_000, (1, args.prompt_tokens), generator=g).to(info.torch_device)
    link = InnerLink(m.hidden_size).to(info.torch_device)

    rows = []
    with torch.inference_mode():
        cached(m, ids, 2, link)  # warm-up: allocator, kernels
        generate(m, ids, 2)
        t_prefill = min(timed(lambda: L.prefill(m, m.embed_ids(ids), torch.ones_like(ids)), info.torch_device)
                        for _ in range(2))
        t_gen_prefill = min(timed(lambda: generate(m, ids, 1), info.torch_device) for _ in range(2))
        for steps in sizes:
            t_c = timed(lambda s=steps: cached(m, ids, s, link), info.torch_device)
            t_g = timed(lambda s=steps: generate(m, ids, s), info.torch_device)
            t_r = None if args.skip_recompute else timed(lambda s=steps: recompute(m, ids, s, link), info.torch_device)
            latent_step = (t_c - t_prefill) / steps
            decode_step = (t_g - t_gen_prefill) / max(steps - 1, 1)
            rows.append((steps, t_r, t_c, t_g, latent_step, decode_step))
            print(f"  m={steps} done", flush=True)

    print()
    print(f"prompt {args.prompt_tokens} tokens; prefill {t_prefill:.3f} s (cached path), "
          f"generate of 1 token {t_gen_prefill:.3f} s")
    print(f"{'m':>4} | {'recompute s':>11} | {'cached s':>8} | {'generate s':>10} | {'speed-up':>8} | "
          f"{'latent step ms':>14} | {'decode step ms':>14} | {'latent/decode':>13}")
    print("-" * 104)
    for steps, t_r, t_c, t_g, ls, ds in rows:
        speed = f"{t_r / t_c:7.1f}x" if t_r is not None else "      -"
        rec = f"{t_r:11.2f}" if t_r is not None else f"{'-':>11}"
        print(f"{steps:>4} | {rec} | {t_c:8.2f} | {t_g:10.2f} | {speed:>8} | {ls * 1e3:14.1f} | "
              f"{ds * 1e3:14.1f} | {ls / ds:12.2f}x")
    print("\nspeed-up = recompute / cached (goal >= 10x at m=80); latent/decode = per-step cost of a "
          "cached latent step over a generate decode step (goal <= 0.9x).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
