"""Trained RecursiveMAS links on disk: one safetensors file plus a JSON manifest.

A checkpoint is a folder::

    manifest.json       format, version, pattern, link type, agents (name, role, model,
                        hidden size), every inner link (per agent) and outer link (per hop)
    links.safetensors   the link weights, keys ``inner.<agent index>.<param>`` and
                        ``outer.<source index>_<target index>.<param>``

Loading checks the manifest against the system it is loaded for (agent count, names,
roles, hidden sizes, the hops the pattern needs) and refuses a mismatch with a
:class:`CheckpointMismatchError` that says what differs, before any tensor is read.
Functions take the run's :class:`~nbmagic.mas.team.Team` (a ``RecursiveMAS`` has the same
fields, so ``save_links(mas, ...)`` works too). Imports torch (through the links) at module
level: import this module only when links are used.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbmagic.errors import CheckpointMismatchError, ConfigError
from nbmagic.mas.links import LINK_TYPES, LinkSet

if TYPE_CHECKING:
    from nbmagic.mas.team import Team

FORMAT = "nbmagic-recursivemas-links"
VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "links.safetensors"
__all__ = ["LinkSet", "check_fit", "describe", "load_links", "read_manifest", "save_links"]


def describe(team: Team, links: LinkSet, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of ``links`` trained for ``team``."""
    from nbmagic import __version__

    return {
        "format": FORMAT,
        "version": VERSION,
        "nbmagic": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pattern": team.pattern,
        "link_type": links.link_type,
        "rounds": team.rounds,
        "latent_steps": team.latent_steps,
        "agents": [
            {"index": m.index, "name": m.name, "role": m.role, "model": m.spec, "hidden_size": links.dims[m.index]}
            for m in team.members
        ],
        "inner": [{"agent": i, "dim": d, "key": f"inner.{i}"} for i, d in enumerate(links.dims)],
        "outer": [
            {"source": s, "target": t, "source_dim": links.dims[s], "target_dim": links.dims[t], "key": f"outer.{s}_{t}"}
            for s, t in links.edges
        ],
        "weights": WEIGHTS,
        "parameters": links.num_parameters(),
        "training": dict(extra or {}),
    }


def save_links(team: Team, links: LinkSet, out_dir: str | Path, *, force: bool = False,
               extra: dict[str, Any] | None = None) -> Path:
    """Write ``links`` and their manifest into ``out_dir``; never overwrite unless ``force``."""
    from safetensors.torch import save_file

    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; a links checkpoint is a folder: choose another path.")
    if (out / MANIFEST).exists() and not force:
        raise ConfigError(f"{out} already holds a links checkpoint; choose another folder or pass force=True (--force).")
    out.mkdir(parents=True, exist_ok=True)
    manifest = describe(team, links, extra)
    _atomic(out / WEIGHTS, lambda p: save_file(links.flat_state(), str(p), metadata={"format": FORMAT}))
    _atomic(out / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8"))
    return out


def _atomic(target: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_manifest(path: str | Path) -> tuple[dict[str, Any], Path]:
    """The manifest at ``path`` (a checkpoint folder, its manifest.json or its .safetensors)."""
    p = Path(path).expanduser()
    if p.is_dir():
        mpath = p / MANIFEST
    elif p.suffix == ".safetensors":
        mpath = p.with_name(MANIFEST)
    else:
        mpath = p
    if not mpath.exists():
        raise ConfigError(f"No links checkpoint at {p}: expected a folder with {MANIFEST} and {WEIGHTS}.")
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointMismatchError(f"{mpath} is not a readable links manifest ({exc}).") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointMismatchError(f"{mpath} is not an nbmagic RecursiveMAS links manifest.")
    _check_shape(data, mpath)
    if int(data.get("version", 0)) > VERSION:
        raise CheckpointMismatchError(
            f"{mpath} was written by a newer nbmagic (format version {data.get('version')}); upgrade nbmagic."
        )
    return data, mpath.parent / str(data.get("weights") or WEIGHTS)


def _check_shape(data: dict[str, Any], mpath: Path) -> None:
    """Refuse a manifest whose fields have the wrong types (hand-edited, truncated) up front,
    so the checks after it can index freely."""
    try:
        int(data.get("version", 0))
        if data.get("link_type", "ln") not in LINK_TYPES:
            raise ValueError(f"unknown link type {data.get('link_type')!r}")
        agents, outer = data.get("agents") or [], data.get("outer") or []
        if not isinstance(agents, list) or not isinstance(outer, list):
            raise TypeError("'agents' and 'outer' must be lists")
        for a in agents:
            int(a["hidden_size"])
        for o in outer:
            if not (0 <= int(o["source"]) < len(agents) and 0 <= int(o["target"]) < len(agents)):
                raise ValueError(f"outer link {o['source']}->{o['target']} names an agent that is not listed")
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise CheckpointMismatchError(
            f"{mpath} is a malformed links manifest ({detail}): save the links again (python -m nbmagic "
            "train-links) or restore the file."
        ) from None


def check_fit(manifest: dict[str, Any], team: Team, dims: list[int]) -> list[str]:
    """Raise if the checkpoint cannot serve ``team``; return warnings for harmless differences."""
    agents = manifest.get("agents") or []
    ours = [f"{m.name} ({m.role}, hidden {d})" for m, d in zip(team.members, dims, strict=True)]
    theirs = [f"{a.get('name')} ({a.get('role')}, hidden {a.get('hidden_size')})" for a in agents]
    if len(agents) != len(team.members):
        raise CheckpointMismatchError(
            f"The links checkpoint was trained for {len(agents)} agents [{', '.join(theirs)}], "
            f"but this system has {len(team.members)} [{', '.join(ours)}]. Train links for these agents "
            "(python -m nbmagic train-links) or drop links=... to use the training-free realignment."
        )
    warnings: list[str] = []
    for m, d, a in zip(team.members, dims, agents, strict=True):
        if int(a.get("hidden_size", -1)) != d:
            raise CheckpointMismatchError(
                f"Agent {m.index + 1} ({m.name}, model {m.spec}) has hidden size {d}, but the checkpoint's "
                f"links for agent {a.get('name')} were trained for hidden size {a.get('hidden_size')} "
                f"(model {a.get('model')}). Use the models the links were trained with, or train new links."
            )
        if a.get("role") != m.role or a.get("name") != m.name:
            raise CheckpointMismatchError(
                f"Agent {m.index + 1} is {m.name} ({m.role}) here but {a.get('name')} ({a.get('role')}) in the "
                f"checkpoint: agents must come in the order [{', '.join(theirs)}]."
            )
        if a.get("model") != m.spec:
            warnings.append(f"agent {m.name}: links were trained with {a.get('model')}, used with {m.spec}")
    have = {(int(o["source"]), int(o["target"])) for o in manifest.get("outer") or []}
    missing = [(s, t) for s, t in team.plan.edges() if (s, t) not in have]
    if missing:
        names = ", ".join(f"{team.members[s].name}->{team.members[t].name}" for s, t in missing)
        raise CheckpointMismatchError(
            f"The checkpoint (pattern {manifest.get('pattern')}) has no outer links for the hops {names} that "
            f"the {team.pattern} pattern needs. Train links for this pattern."
        )
    return warnings


def load_links(path: str | Path, team: Team) -> LinkSet:
    """Load links for ``team`` from ``path``, checking that they fit first."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    manifest, weights = read_manifest(path)
    dims = [int(m.model.hidden_size) for m in team.members]
    warnings = check_fit(manifest, team, dims)
    link_type = str(manifest.get("link_type", "ln"))
    edges = [(int(o["source"]), int(o["target"])) for o in manifest.get("outer") or []]
    links = LinkSet(link_type, dims, edges)
    if not weights.exists():
        raise CheckpointMismatchError(f"The links checkpoint lists {weights.name}, but {weights} is missing.")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise CheckpointMismatchError(f"{weights} cannot be read as safetensors ({exc}).") from None
    try:
        links.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # "Error(s) in loading state_dict ...:" then one line per problem
        lines = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()] or [str(exc)]
        detail = "; ".join(lines)
        detail = detail if len(detail) <= 400 else detail[:400] + " …"
        raise CheckpointMismatchError(f"{weights} does not match its manifest: {detail}") from None
    links.warnings = warnings
    first = team.members[0].model
    links.to(device=getattr(first, "torch_device", "cpu"))
    links.eval()
    links.requires_grad_(False)
    return links
