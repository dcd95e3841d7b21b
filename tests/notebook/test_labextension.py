"""The prebuilt extension: committed, current with its sources, packaged for pip."""

from __future__ import annotations

import json
import re

import nbmagic
from nbmagic.notebook import live
from nbmagic.notebook.extension import (
    FRONTEND_DIR,
    LABEXTENSION_DIR,
    build_is_current,
    source_fingerprint,
)


def test_built_extension_is_complete_and_loadable():
    meta = json.loads((LABEXTENSION_DIR / "package.json").read_text())
    assert meta["name"] == "nbmagic"
    entry = LABEXTENSION_DIR / meta["jupyterlab"]["_build"]["load"]
    assert entry.is_file() and entry.stat().st_size > 1000
    install = json.loads((LABEXTENSION_DIR / "install.json").read_text())
    assert install["packageName"] == "nbmagic"
    # `jupyter labextension develop` and friends find it through the package
    paths = nbmagic._jupyter_labextension_paths()
    assert paths == [{"src": "labextension", "dest": "nbmagic"}]
    assert (LABEXTENSION_DIR.parent / paths[0]["src"]) == LABEXTENSION_DIR


def test_build_matches_the_typescript_sources():
    assert build_is_current(), (
        "frontend/ changed since nbmagic/labextension was built: run scripts/build_labextension.sh "
        "and commit the output"
    )
    assert source_fingerprint()["files"][-1] == "src/index.ts"


def test_protocol_constants_agree_between_kernel_and_frontend():
    source = (FRONTEND_DIR / "src" / "index.ts").read_text()
    assert re.search(rf"const TARGET = '{live.TARGET}';", source)
    assert re.search(rf"const PROTOCOL = {live.PROTOCOL};", source)
    assert re.search(rf"const VERSION = '{re.escape(nbmagic.__version__)}';", source)
    package = json.loads((FRONTEND_DIR / "package.json").read_text())
    assert package["version"] == nbmagic.__version__
    bundle = "".join(p.read_text() for p in (LABEXTENSION_DIR / "static").glob("*.js"))
    for word in ("deliver", "hello", "ready", "inserted", "requestExecute"):
        assert word in bundle


def test_wheel_installs_the_extension_where_jupyter_looks():
    text = (FRONTEND_DIR.parent / "pyproject.toml").read_text()
    section = text.split("[tool.hatch.build.targets.wheel.shared-data]", 1)[1].split("\n[", 1)[0]
    assert '"nbmagic/labextension" = "share/jupyter/labextensions/nbmagic"' in section


def test_installed_locations_follow_jupyters_data_path(tmp_path, monkeypatch):
    from nbmagic.notebook.extension import installed_locations

    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    before = installed_locations()
    assert tmp_path / "labextensions" / "nbmagic" not in before
    (tmp_path / "labextensions").mkdir()
    (tmp_path / "labextensions" / "nbmagic").symlink_to(LABEXTENSION_DIR)
    assert tmp_path / "labextensions" / "nbmagic" in installed_locations()
