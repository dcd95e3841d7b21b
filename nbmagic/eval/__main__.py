"""``python -m nbmagic.eval rlm|agent|mas ...`` (see each suite's ``--help``)."""

from __future__ import annotations

import argparse

from nbmagic.cli import run_guarded


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nbmagic.eval", description="nbmagic evaluations")
    sub = parser.add_subparsers(dest="suite", metavar="SUITE")
    from nbmagic.eval import agent_cli, rlm_cli

    p = sub.add_parser("rlm", help=rlm_cli.HELP, description=rlm_cli.__doc__)
    rlm_cli.add_arguments(p)
    p.set_defaults(_run=rlm_cli.run)
    p = sub.add_parser("agent", help=agent_cli.HELP, description=agent_cli.__doc__)
    agent_cli.add_arguments(p)
    p.set_defaults(_run=agent_cli.run)
    from nbmagic.eval import mas_cli

    p = sub.add_parser("mas", help=mas_cli.HELP, description=mas_cli.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    mas_cli.add_arguments(p)
    p.set_defaults(_run=mas_cli.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "suite", None):
        parser.print_help()
        return 2
    return run_guarded("nbmagic.eval", lambda: args._run(args))


if __name__ == "__main__":
    raise SystemExit(main())
