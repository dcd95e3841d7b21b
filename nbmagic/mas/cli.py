"""``python -m nbmagic train-links``: train RecursiveMAS links on a JSONL dataset.

Light to import (argparse only): torch, transformers and the training code load in
:func:`run`. Prints one line per training step and writes a links checkpoint folder
(``manifest.json`` + ``links.safetensors``) that ``RecursiveMAS(links=...)`` loads.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nbmagic.errors import ConfigError

EPILOG = """\
dataset: one JSON object per line with "question" and "answer"; other string fields
(e.g. "plan", "critique") are extra plain text for the inner loop of the agent whose
role matches the field name.

examples:
  python -m nbmagic train-links --data train.jsonl --model hf:Qwen/Qwen2.5-0.5B-Instruct --out links/
  python -m nbmagic train-links --data train.jsonl --agent planner=hf:Qwen/Qwen3-1.7B \\
      --agent critic=hf:meta-llama/Llama-3.2-1B-Instruct --agent solver=hf:Qwen/Qwen3-1.7B
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--data", required=True, help="JSONL file with question/answer lines")
    parser.add_argument("--model", help="one hf: model for all the pattern's default roles")
    parser.add_argument(
        "--agent", action="append", default=[], metavar="ROLE=SPEC",
        help="an agent (repeat, in order), e.g. planner=hf:Qwen/Qwen2.5-0.5B-Instruct",
    )
    parser.add_argument("--pattern", default="sequential",
                        choices=["sequential", "mixture", "distillation", "deliberation"])
    parser.add_argument("--rounds", type=int, default=3, help="recursion rounds (default 3)")
    parser.add_argument("--latent-steps", type=int, default=32, help="latent thoughts per agent (default 32)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=3e-4, help="outer-loop learning rate (default 3e-4)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of steps for LR warmup")
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--inner-steps", type=int, default=0,
                        help="cosine-alignment steps per agent before the outer loop (default 0)")
    parser.add_argument("--inner-lr", type=float, default=1e-3)
    parser.add_argument("--max-answer-tokens", type=int, default=64)
    parser.add_argument("--max-steps", type=int, default=None, help="stop the outer loop after this many steps")
    parser.add_argument("--link-type", default="ln", choices=["ln", "mlp"],
                        help="LayerNorm-wrapped links (ln, default) or plain residual MLPs (mlp); with --init, the checkpoint's")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="recompute agent passes in the backward pass to save memory")
    parser.add_argument("--init", metavar="DIR", help="start from an existing links checkpoint")
    parser.add_argument("--device", help="cuda, mps, xpu or cpu (default: detected)")
    parser.add_argument("--dtype", help="float32, bfloat16 or float16 (default: per device)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="links", help="output folder (default ./links)")
    parser.add_argument("--force", action="store_true", help="overwrite a checkpoint already in --out")


def _agent_args(args: argparse.Namespace) -> list[tuple[str, str]]:
    """``--agent ROLE=SPEC`` pairs, checked before anything heavy is imported."""
    if args.agent and args.model:
        raise ConfigError("Give either --model (default roles) or --agent ROLE=SPEC, not both.")
    if not args.agent and not args.model:
        raise ConfigError("Name the models: --model hf:<repo or path>, or --agent ROLE=SPEC for each agent.")
    pairs = []
    for item in args.agent:
        role, sep, spec = item.partition("=")
        if not sep or not role.strip() or not spec.strip():
            raise ConfigError(f"--agent {item!r} must look like ROLE=SPEC, e.g. solver=hf:Qwen/Qwen2.5-0.5B-Instruct")
        pairs.append((role.strip(), spec.strip()))
    return pairs


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    out = Path(args.out).expanduser()
    existing = next(p for p in (out, *out.parents) if p.exists())  # found now, not after the training
    if not existing.is_dir():
        raise ConfigError(f"--out {out}: {existing} is a file; a links checkpoint is a folder: choose another --out.")
    if (out / "manifest.json").exists() and not args.force:
        raise ConfigError(f"{out} already holds a links checkpoint; choose another --out or pass --force.")
    if not Path(args.data).expanduser().is_file():
        raise ConfigError(f"No dataset at {args.data}: give a JSONL file with one question/answer object per line.")
    pairs = _agent_args(args)
    from nbmagic.mas.train import TrainConfig, load_jsonl

    examples = load_jsonl(args.data)
    cfg = TrainConfig(
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, warmup=args.warmup,
        weight_decay=args.weight_decay, grad_clip=args.grad_clip, inner_steps=args.inner_steps,
        inner_lr=args.inner_lr, max_answer_tokens=args.max_answer_tokens,
        gradient_checkpointing=args.gradient_checkpointing, link_type=args.link_type, seed=args.seed,
        max_steps=args.max_steps,
    )
    cfg.validate()  # before any model loads
    from nbmagic.llm.specs import load_model
    from nbmagic.mas.system import RecursiveMAS
    from nbmagic.mas.train import train_links

    loaded: dict[str, Any] = {}

    def load(spec: str) -> Any:
        if spec not in loaded:
            kw = {k: v for k, v in (("device", args.device), ("dtype", args.dtype)) if v}
            if not spec.startswith("hf:") and kw:
                kw = {}
            loaded[spec] = load_model(spec, **kw)
        return loaded[spec]

    from nbmagic.mas.system import Agent

    agents = [Agent(load(spec), role) for role, spec in pairs] or None
    model = load(args.model) if args.model else None
    mas = RecursiveMAS(agents, model=model, pattern=args.pattern, rounds=args.rounds,
                       latent_steps=args.latent_steps, mode="latent", links=args.init)
    print(f"training links for {mas!r} on {len(examples)} examples", flush=True)

    def log(row: dict[str, Any]) -> None:
        if row["phase"] == "inner":
            print(f"inner {row['agent']} step {row['step']}/{row['total']} loss {row['loss']:.4f}", flush=True)
        else:
            print(f"step {row['step']}/{row['total']} loss {row['loss']:.4f} lr {row['lr']:.2e} "
                  f"grad_norm {row['grad_norm']:.3f}", flush=True)

    from nbmagic.errors import RunInterrupted

    try:
        report = train_links(mas, examples, cfg, on_log=log)
    except RunInterrupted as exc:  # Ctrl-C: keep the steps already taken
        partial = exc.partial
        if partial is None or not (partial.outer_losses or any(partial.inner_losses.values())):
            raise KeyboardInterrupt from None
        _save(mas, partial.links, out, args.force,
              {**partial.summary(), "interrupted": True, "dataset": str(args.data), "config": vars(cfg)})
        print(f"nbmagic: interrupted; wrote the links trained so far ({len(partial.outer_losses)} outer steps) "
              f"to {out}", file=sys.stderr, flush=True)
        return 130
    summary = report.summary()
    _save(mas, report.links, out, args.force, {**summary, "dataset": str(args.data), "config": vars(cfg)})
    print(f"wrote {out} ({summary['parameters']:,} link parameters; loss {summary['first_loss']:.4f} -> "
          f"{summary['last_loss']:.4f}; {summary['seconds']:.1f} s)", file=sys.stdout, flush=True)
    return 0


def _save(mas: Any, links: Any, out: Any, force: bool, extra: dict[str, Any]) -> None:
    """Write the checkpoint; if ``out`` cannot be written (permissions, disk), write it to a
    temporary folder instead and say where: trained links are never thrown away."""
    import tempfile
    from pathlib import Path

    from nbmagic.mas.checkpoint import save_links

    try:
        save_links(mas, links, out, force=force, extra=extra)
    except OSError as exc:
        fallback = Path(tempfile.mkdtemp(prefix="nbmagic-links-"))
        save_links(mas, links, fallback, force=True, extra=extra)
        raise ConfigError(
            f"Could not write {out} ({exc.strerror or exc}); the trained links were saved to {fallback} instead."
        ) from None
