"""nbmagic without magics: the plain Python API behind %%agent and %rlm.

Run it with any model (default resolution, or NBMAGIC_MODEL, or --model):

    python examples/api_example.py --model openai:gpt-4o-mini

With no key at all, start nbmagic's scripted test model first:

    python -m nbmagic.testing.openai_server --port 8765 \\
        --responder nbmagic.testing.examples_responder:respond &
    python examples/api_example.py --model openai-compat:test-model@http://127.0.0.1:8765/v1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from long_text import VAULT, make_log  # noqa: E402

from nbmagic import RLM, NbmagicError, NotebookAgent, load_model  # noqa: E402
from nbmagic.events import RlmIteration  # noqa: E402
from nbmagic.notebook.sinks import FileSink  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model spec (default: NBMAGIC_MODEL or the default order)")
    ap.add_argument("--out-dir", default=".", help="where to write sales_analysis.ipynb")
    ap.add_argument("--force", action="store_true", help="overwrite sales_analysis.ipynb if it exists")
    args = ap.parse_args(argv)

    try:
        model = load_model(args.model)  # one model object, shared by both engines
        print(f"model: {model.backend}:{model.name}")

        # 1. A Recursive Language Model over a long text held in a variable.
        log = make_log()

        def show(event):  # engines report progress as small event objects
            if isinstance(event, RlmIteration):
                print(f"  rlm iteration {event.i}: {len(event.code.splitlines())} lines of code")

        rlm = RLM(model, max_iterations=8, on_event=show)
        res = rlm.query(f"What is the access code for vault {VAULT}?", context=log)
        print(f"answer: {res.answer}  ({res.iterations} iterations, {res.llm_calls} sub-calls, "
              f"{res.total_usage.total_tokens} tokens, {res.seconds:.1f} s)")

        # 2. The notebook agent, writing a new notebook file (plus running each cell here).
        out = Path(args.out_dir) / "sales_analysis.ipynb"
        agent = NotebookAgent(model, mas_options={"rounds": 1})
        result = agent.run(
            f"Analyze {HERE / 'sales_data.csv'}: the top 5 products by revenue and a monthly revenue trend plot",
            namespace={},
            sink=FileSink(out, force=args.force),
        )
        print(result.summary)
    except NbmagicError as exc:  # every error a user can cause says what to do
        print(f"nbmagic: {exc.message}", file=sys.stderr)
        return 2
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
