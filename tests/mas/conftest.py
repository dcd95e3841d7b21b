"""Fixtures shared by the RecursiveMAS tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from nbmagic.mas import auto

#: what ``python -m nbmagic.eval mas`` measured, for the tests of ``mode="auto"`` itself
MEASURED_EVIDENCE = dict(auto.EVIDENCE)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Two busy-waiting BLAS threads on a shared 2-core box are ~15x slower than one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _auto_picks_latent(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mechanics tests here run ``mode="auto"`` on local models to exercise latent mode;
    with the measured evidence (latent below text on SmolLM2) auto would pick text. Tests of
    auto's choice restore :data:`MEASURED_EVIDENCE`."""
    monkeypatch.setattr(auto, "EVIDENCE", {p: auto.Evidence(1, 0, "test") for p in
                                           ("sequential", "mixture", "distillation", "deliberation")})
