"""Keys never leave in text: registered keys, keys from the environment, and key-shaped tokens."""

from __future__ import annotations

from nbmagic.llm.specs import load_model
from nbmagic.secrets import MASK, mask_key, redact, register_secret


def test_registered_and_environment_keys_are_masked(monkeypatch):
    register_secret("plain-secret-4f3e2d")
    monkeypatch.setenv("HF_TOKEN", "tokenFromEnv-998877")
    text = redact("a plain-secret-4f3e2d b tokenFromEnv-998877 c")
    assert text == f"a {MASK} b {MASK} c"


def test_key_shaped_tokens_are_masked_without_registration():
    text = redact("sk-proj-abcdefgh1234 hf_abcdefghijklmnopqrstu Bearer abc.def.ghi-jkl sk-no")
    assert text == f"{MASK} {MASK} {MASK} sk-no"  # too short to be a key: kept


def test_short_values_are_not_registered():
    register_secret("abc")  # would mask every "abc" in every message
    assert redact("abc def") == "abc def"


def test_local_servers_placeholder_key_is_not_a_secret(openai_server):
    load_model(f"openai-compat:test-model@{openai_server.url}")  # sends a placeholder key
    assert redact("this step is not-needed") == "this step is not-needed"


def test_mask_key_shows_only_that_a_key_is_set():
    assert mask_key(None) == "(not set)"
    assert mask_key("short") == MASK
    assert mask_key("sk-0123456789abcdef") == f"{MASK}ef"
