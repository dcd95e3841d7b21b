"""Recursive Language Models: long-context queries over data held in kernel variables.

``from nbmagic.rlm.agent import RLM`` (also ``nbmagic.RLM``). Submodules:
``context`` (summaries), ``execution`` (running a turn), ``repl`` (environments),
``worker`` (the subprocess REPL), ``tools`` (helpers and budgets), ``prompts``,
``trajectory`` (JSONL), ``agent`` (the loop), ``cli`` (``python -m nbmagic rlm``).
"""
