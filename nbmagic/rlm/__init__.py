"""Recursive Language Models: long-context queries over data held in kernel variables.

``from nbmagic.rlm.agent import RLM`` (also ``nbmagic.RLM``). Submodules:
``context`` (summaries), ``execution`` (running a turn), ``repl`` (environments),
``worker`` (the subprocess REPL), ``tools`` (helpers, user tools and budgets),
``prompts``, ``trajectory`` (JSONL), ``agent`` (the loop: ``RLM`` and one ``RLMRun`` per
invocation), ``session`` (a REPL across queries), ``subagents`` (forks of the REPL),
``native`` (the REPL as a function tool), ``compaction`` (history near the window),
``schemas`` (typed answers), ``pricing`` (cost budgets), ``cli`` (``python -m nbmagic rlm``).
"""
