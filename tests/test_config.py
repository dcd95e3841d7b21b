"""Settings: explicit > environment > default, with the source of each value, and clear refusals."""

from __future__ import annotations

import pytest

from nbmagic.config import settings
from nbmagic.errors import ConfigError


def test_explicit_beats_environment_beats_default(monkeypatch):
    assert (settings.get("rounds").value, settings.get("rounds").source) == (3, "default")
    monkeypatch.setenv("NBMAGIC_ROUNDS", "5")
    assert (settings.rounds, settings.get("rounds").source) == (5, "env NBMAGIC_ROUNDS")
    settings.rounds = "7"  # converted to the setting's type
    assert (settings.rounds, settings.get("rounds").source) == (7, "%config")
    settings.rounds = None  # back to the environment's value
    assert settings.rounds == 5


def test_a_value_of_the_wrong_type_is_refused_and_the_old_one_kept():
    settings.set("cell_timeout", 30, source="argument")
    with pytest.raises(ConfigError, match="cell_timeout must be a number, not 'soon'"):
        settings.cell_timeout = "soon"
    assert settings.get("cell_timeout").value == 30.0 and settings.get("cell_timeout").source == "argument"


def test_a_bad_environment_value_is_ignored_visibly(monkeypatch):
    monkeypatch.setenv("NBMAGIC_LATENT_STEPS", "lots")
    setting = settings.get("latent_steps")
    assert setting.value == 32
    assert "NBMAGIC_LATENT_STEPS='lots' ignored" in setting.source


def test_unknown_names_are_attribute_errors_naming_the_known_ones():
    with pytest.raises(AttributeError, match="known: model"):
        settings.roundz  # noqa: B018
    assert [s.name for s in settings.explain()][:2] == ["model", "sub_model"]
