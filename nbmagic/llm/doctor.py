"""``python -m nbmagic doctor``: what nbmagic sees on this machine, and whether a model answers.

It reports the device local models would run on, which backends are installed (found
through package metadata, without importing them), the model nbmagic would use when
none is named and why, and the relevant environment variables (keys masked). With
``--check`` it sends one short chat to that model and reports the reply or the one
clear error, and tries a quantized GGUF (the chosen one, else the embedded model) in a
child process, so a llama.cpp build that would crash this CPU is named with its rebuild.
It also lists the models shipped in installed packages ("embedded") and which backends
can run each. This module is imported when the CLI parser is built, so it imports
nothing heavy at module level.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib import metadata
from typing import Any

from nbmagic.errors import ModelNotFoundError, NbmagicError
from nbmagic.secrets import mask_key, redact

#: backend -> (distributions it needs, install hint)
BACKEND_PACKAGES: dict[str, tuple[tuple[str, ...], str]] = {
    "openai": (("openai",), "pip install openai"),
    "hf": (("torch", "transformers"), "pip install 'nbmagic[local]'"),
    "gguf": (("llama-cpp-python",), "pip install 'nbmagic[gguf]'"),
}
BACKEND_SPECS = {
    "openai": "openai:, azure:, ollama:, openai-compat:",
    "hf": "hf:",
    "gguf": "gguf:",
}
OPTIONAL_PACKAGES = ("accelerate", "huggingface_hub", "safetensors", "ipywidgets", "jupyterlab")

ENV_VARS = (
    "NBMAGIC_MODEL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OLLAMA_HOST",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_API_KEY",
    "OPENAI_API_VERSION",
    "NBMAGIC_DEVICE",
    "HF_HUB_OFFLINE",
    "HF_HOME",
    "HF_ENDPOINT",
    "NBMAGIC_ALLOW_DOWNLOAD",
    "NBMAGIC_KEEP_EMBEDDED",
    "NBMAGIC_DEFAULT_GGUF",
)
_SECRET_VARS = {"OPENAI_API_KEY", "AZURE_OPENAI_API_KEY"}

CHECK_PROMPT = "Reply with one word: ok"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check", action="store_true", help="send one short chat to the model and report the reply or the error"
    )
    parser.add_argument("--model", "-m", default=None, help="model spec to report on (default: the default model)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the --check reply")


def run(args: argparse.Namespace) -> int:
    report = collect(check=args.check, model=args.model, timeout=args.timeout)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    check = report.get("check")
    smoke = report.get("gguf_smoke")
    failed = (check is not None and not check["ok"]) or (smoke is not None and not smoke["ok"])
    return 1 if failed else 0


# -- gathering ----------------------------------------------------------------------------------


def collect(*, check: bool = False, model: str | None = None, timeout: float = 60.0) -> dict[str, Any]:
    """Everything doctor reports, as plain data (what ``--json`` prints)."""
    report: dict[str, Any] = {
        "nbmagic": _version("nbmagic") or _package_version(),
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "device": device_report(),
        "backends": backends_report(),
        "packages": {name: _version(name) for name in OPTIONAL_PACKAGES},
        "environment": env_report(),
        "embedded": embedded_report(),
        "default_model": default_model_report(model),
        "check": None,
        "gguf_smoke": None,
    }
    from nbmagic.llm.vision import describe_spec

    report["images"] = describe_spec(report["default_model"]["spec"])  # does the model see figures as images
    if check:
        spec = report["default_model"]["spec"]
        if _version("llama-cpp-python"):  # before the in-process check, which a crash would end
            report["gguf_smoke"] = gguf_smoke_report(spec, report["embedded"])
        report["check"] = check_model(spec, timeout=timeout, automatic=model is None)
    return report


def embedded_report() -> list[dict[str, Any]]:
    """Models shipped inside installed packages: where, how big, and which backends can run them."""
    from nbmagic.llm.embedded import EMBEDDED_MODELS, embedded_disabled, locate
    from nbmagic.llm.gguf_hf import cached_folder, is_converted
    from nbmagic.llm.gguf_tables import latent_backends
    from nbmagic.llm.specs import embedded_backends

    backends = embedded_backends()
    out = []
    for model in EMBEDDED_MODELS:
        path = locate(model)
        entry: dict[str, Any] = {"title": model.title, "distribution": model.distribution, "license": model.license,
                                 "path": None, "size": None, "backends": [], "specs": [], "hf_cached": False,
                                 "install": model.install, "default_allowed": not embedded_disabled()}
        if path is not None:
            entry.update(path=str(path), size=path.stat().st_size, backends=backends,
                         specs=[f"{b}:{path}" for b in backends], hf_cached=is_converted(cached_folder(path)))
            entry["latent"] = latent_backends(path, backends)
        out.append(entry)
    return out


def gguf_smoke_report(spec: str | None, embedded: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A two-token generation on a quantized GGUF in a child process (None: no GGUF to try)."""
    from nbmagic.llm.gguf_preflight import smoke_test

    path = spec.split(":", 1)[1] if spec and spec.startswith("gguf:") else None
    if path is None:
        path = next((e["path"] for e in embedded if e["path"]), None)
    if path is None or not os.path.isfile(os.path.expanduser(path)):
        return None
    result = smoke_test(os.path.expanduser(path))
    return {"path": path, "ok": result.ok, "seconds": round(result.seconds, 3), "message": result.message,
            "signal": result.signal_name}


def device_report() -> dict[str, Any]:
    """Where local models would run (PyTorch) and whether llama.cpp can offload to a GPU."""
    out: dict[str, Any] = {"kind": None, "torch_device": None, "name": None, "dtype": None, "reason": None}
    try:
        from nbmagic.llm.devices import detect_device

        info = detect_device()
        out.update(kind=info.kind, torch_device=info.torch_device, name=info.name, dtype=info.dtype, reason=info.reason)
    except NbmagicError as exc:
        out["reason"] = exc.message
    except Exception as exc:  # a broken torch install must not stop the report
        out["reason"] = f"device detection failed: {type(exc).__name__}: {exc}"
    out["llama_cpp_gpu_offload"] = _llama_offload() if _version("llama-cpp-python") else None
    return out


def _llama_offload() -> bool | None:
    try:
        from nbmagic.llm.llamacpp import gpu_offload_supported

        return gpu_offload_supported()
    except Exception:
        return None


def backends_report() -> dict[str, dict[str, Any]]:
    """Each backend: installed or not, the versions found, and how to install it."""
    out: dict[str, dict[str, Any]] = {}
    for backend, (packages, hint) in BACKEND_PACKAGES.items():
        versions = {p: _version(p) for p in packages}
        ok = all(versions.values())
        out[backend] = {
            "installed": ok,
            "versions": versions,
            "specs": BACKEND_SPECS[backend],
            "install": None if ok else hint,
        }
    return out


def env_report() -> dict[str, str | None]:
    """The environment variables that steer model choice; keys shown only as set/not set."""
    out: dict[str, str | None] = {}
    for name in ENV_VARS:
        value = os.environ.get(name)
        if name in _SECRET_VARS:
            out[name] = mask_key(value) if value else None
        else:
            out[name] = redact(value) if value else None
    return out


def default_model_report(model: str | None = None) -> dict[str, Any]:
    """Which model would be used, why, and what was tried before it."""
    from nbmagic.llm.specs import resolve_default

    resolution = resolve_default(model)
    out: dict[str, Any] = {"spec": resolution.spec, "reason": resolution.reason, "tried": list(resolution.tried)}
    if resolution.hub is not None:  # the choice came down to the hub's coder GGUF: say its state
        from nbmagic.llm.hub_default import hub_report

        out["hub"] = hub_report()
    return out


def check_model(spec: str | None, *, timeout: float = 60.0, automatic: bool = False) -> dict[str, Any]:
    """Load ``spec`` and send it one short chat; never raises for errors a user can cause.

    ``automatic`` means ``spec`` is the default resolution's pick: it is loaded the way
    engines load it (``load_model(None)``), so a failing last resort gives the same
    "here are all the ways to get a model" message users would see.
    """
    from nbmagic.llm.specs import load_model

    result: dict[str, Any] = {"ok": False, "spec": spec, "reply": None, "seconds": None, "usage": None, "error": None}
    t0 = time.perf_counter()
    model = None
    try:
        kwargs: dict[str, Any] = {}
        if spec and spec.split(":", 1)[0] in ("openai", "azure", "ollama", "openai-compat"):
            kwargs = {"timeout": timeout, "max_retries": 1}
        model = load_model(None if automatic else spec, **kwargs)
        if automatic:  # loading may have fetched the hub's default: report the model that answered
            result["spec"] = f"{model.backend}:{model.name}"
        reply = model.chat(CHECK_PROMPT, max_tokens=16, temperature=0)
        result.update(ok=True, reply=reply.text, usage=reply.usage.as_dict(), model=repr(model))
    except NbmagicError as exc:
        result.update(error=redact(exc.message), error_type=type(exc).__name__)
        if isinstance(exc, ModelNotFoundError) and hasattr(model, "list_models"):
            try:  # the server is up but lacks that model: say what it has
                result["available_models"] = list(model.list_models())  # type: ignore[union-attr]
            except NbmagicError:
                pass
    except Exception as exc:  # a backend bug: still a report, not a traceback
        result.update(error=redact(f"{type(exc).__name__}: {exc}"), error_type=type(exc).__name__)
    finally:
        result["seconds"] = round(time.perf_counter() - t0, 3)
        if model is not None:
            try:
                model.close()
            except Exception:
                pass
    return result


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _package_version() -> str:
    from nbmagic import __version__

    return f"{__version__} (source tree)"


# -- text ------------------------------------------------------------------------------------------


def _hub_lines(hub: dict[str, Any]) -> list[str]:
    """The default coder GGUF from the hub: which file, cached or not, and what would happen."""
    size = f", {hub['size'] / 1e9:.1f} GB" if hub.get("size") else ""
    lines = [f"  hub default: {hub['repo']}/{hub['file']}@{hub['revision']}{size}"]
    pin = hub["sha256"] or "none pinned: the hub's LFS sha256 is checked"
    lines.append(f"    sha256: {pin}")
    if hub["keep_embedded"]:
        lines.append("    not used: keep_embedded is set")
    if hub["cached"]:
        lines.append(f"    cached: {hub['cached']}")
        return lines
    lines.append(f"    not cached (cache: {hub['cache_dir']})")
    if hub["offline"]:
        lines.append(f"    hub offline: {hub['offline']}")
    elif hub["reachable"] is not None:
        state = "answers" if hub["reachable"] else "not reachable"
        lines.append(f"    hub {hub['endpoint']}: {state} ({hub['reach_detail']})")
    consent = hub["allow_download"]
    if consent is None:
        asked = "declined before" if hub["declined_before"] else "asked first where someone can answer"
        lines.append(f"    download: {asked}; allow with NBMAGIC_ALLOW_DOWNLOAD=1")
    else:
        lines.append(f"    download: {'allowed' if consent else 'off'} ({hub['allow_download_source']})")
    return lines


def format_report(report: dict[str, Any]) -> str:
    """The human-readable report."""
    lines = [f"nbmagic {report['nbmagic']}  ·  Python {report['python']}", f"platform: {report['platform']}", ""]

    dev = report["device"]
    lines.append("Device for local models")
    if dev["kind"]:
        lines.append(f"  {dev['kind']}: {dev['name']} ({dev['torch_device']}, {dev['dtype']}) - {dev['reason']}")
    else:
        lines.append(f"  unknown: {dev['reason']}")
    offload = dev.get("llama_cpp_gpu_offload")
    if offload is not None:
        lines.append(
            "  llama.cpp: "
            + ("GPU offload available (all layers)" if offload else "CPU-only build (no GPU offload)")
        )
    lines.append("")

    lines.append("Backends")
    for name, info in report["backends"].items():
        versions = ", ".join(f"{p} {v or 'missing'}" for p, v in info["versions"].items())
        status = "ok     " if info["installed"] else "missing"
        extra = "" if info["installed"] else f"  -> {info['install']}"
        lines.append(f"  {status} {name:<7} {versions}  [{info['specs']}]{extra}")
    lines.append("")

    lines.append("Environment")
    for name, value in report["environment"].items():
        if value is not None:
            lines.append(f"  {name}={value}")
    if all(v is None for v in report["environment"].values()):
        lines.append("  (none of the model variables are set)")
    lines.append("")

    lines.append("Embedded models (shipped in installed packages)")
    for e in report.get("embedded", []):
        if e["path"]:
            runs = ", ".join(e["backends"]) or "no backend installed"
            cached = "; hf: copy cached" if e["hf_cached"] else ""
            lines.append(f"  {e['title']}: {e['size'] / 1e6:.0f} MB, {e['license']}  [{runs}{cached}]")
            lines.append(f"    {e['path']}")
            if e.get("latent"):
                lines.append(f"    {e['latent']}")
            if not e["default_allowed"]:
                lines.append("    not a default choice (NBMAGIC_EMBEDDED=0)")
        else:
            lines.append(f"  {e['title']}: not installed  -> {e['install']}")
    lines.append("")

    dm = report["default_model"]
    lines.append("Default model")
    lines.append(f"  {dm['spec']}  ({dm['reason']})")
    for tried in dm["tried"]:
        lines.append(f"    tried: {tried}")
    if dm.get("hub"):
        lines.extend(_hub_lines(dm["hub"]))
    if report.get("images"):
        lines.append(f"  images: {report['images']}")

    check = report.get("check")
    if check is not None:
        lines.append("")
        lines.append("Check")
        smoke = report.get("gguf_smoke")
        if smoke is not None:
            state = "ok" if smoke["ok"] else "FAILED"
            lines.append(f"  llama.cpp on a quantized GGUF, in a child process: {state} ({smoke['seconds']:.2f} s)")
            if not smoke["ok"]:
                lines.append(f"  {smoke['message']}")
        if check["ok"]:
            usage = check["usage"] or {}
            lines.append(
                f"  ok: {check['spec']} answered {check['reply']!r} in {check['seconds']:.2f} s "
                f"({usage.get('prompt_tokens', 0)} prompt + {usage.get('completion_tokens', 0)} completion tokens)"
            )
        else:
            lines.append(f"  FAILED ({check.get('error_type', 'error')}) after {check['seconds']:.2f} s:")
            lines.append(f"  {check['error']}")
            if check.get("available_models"):
                lines.append(f"  the server offers: {', '.join(check['available_models'])}")
    else:
        lines.append("")
        lines.append("Run with --check to send the model one short chat.")
    return "\n".join(lines)
