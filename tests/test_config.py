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
    with pytest.raises(ConfigError, match="cell_timeout must be a number of seconds of at least 0 \\(0: no limit\\), not 'soon'"):
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


def test_bounds_are_checked_in_one_place_for_every_entry_point(monkeypatch):
    from nbmagic.config import check_value

    assert check_value("latent_steps", 16, "--latent-steps") == 16
    for bad in (0, -3, 5000, True, 2.5, "8"):
        with pytest.raises(ConfigError, match="--latent-steps must be a whole number from 1 to 4096"):
            check_value("latent_steps", bad, "--latent-steps")
    with pytest.raises(ConfigError, match="nbmagic setting rounds must be a whole number from 1 to 100, not 0"):
        settings.rounds = 0  # %config NbMagic.rounds = 0
    assert settings.rounds == 3
    monkeypatch.setenv("NBMAGIC_ROUNDS", "0")
    assert settings.rounds == 3 and "NBMAGIC_ROUNDS='0' ignored: not a whole number from 1 to 100" in settings.get("rounds").source
    from nbmagic.mas.system import RecursiveMAS  # the engine refuses with the same words

    with pytest.raises(ConfigError, match="latent_steps must be a whole number from 1 to 4096, not 0"):
        RecursiveMAS(model="openai-compat:m@http://127.0.0.1:9/v1", latent_steps=0)
