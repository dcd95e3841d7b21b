"""Make a small local model answer with a code block every time.

The embedded 135M model often answers a code request with prose and no fence; the
agent then asks again and again ("the model never answered with a code block").
llama.cpp can constrain sampling with a GBNF grammar: the reply is then at most
one line of prose, then a ```python block, by construction. Only GGUF models
(llama-cpp-python's ``grammar`` argument, passed through the model layer's
generation params) take it; other backends get no extra arguments.

The grammar, as a reader sees it::

    root  ::= intro? "```python\n" code "```"
    intro ::= one line of at most 240 characters without backticks, then one or two newlines
    code  ::= at most 3 comment lines of at most 160 characters, then a line that starts a statement
              (a letter, _, (, [), then any lines (so a block of comments only, which the 135M model
              wrote, cannot be sampled, nor can an endless run of "#" lines that the token cap cuts
              before any statement: make run on the embedded model produced exactly that)
"""

from __future__ import annotations

from typing import Any

from nbmagic.llm.grammar import grammar_params

CODE_GRAMMAR = r'''
root ::= intro? "```python\n" comment{0,3} statement line* "```"
intro ::= [^`\n]{1,240} "\n" "\n"?
comment ::= "#" [^`\n]{0,160} "\n"
statement ::= [a-zA-Z_(\[] [^`\n]* "\n"
line ::= [^`\n]* "\n"
'''


def code_block_params(model: Any, enabled: bool = True) -> dict[str, Any]:
    """Extra chat arguments that force a code block on ``model`` ({} where it cannot be done)."""
    return grammar_params(model, CODE_GRAMMAR) if enabled else {}
