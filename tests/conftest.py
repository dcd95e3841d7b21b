"""Shared fixtures. Each family lives in its own module under tests/fixtures/."""

pytest_plugins = [
    "tests.fixtures.openai_server",
    "tests.fixtures.kernels",
    "tests.fixtures.hf_models",
    "tests.fixtures.gguf_models",
    "tests.fixtures.real_models",
    "tests.fixtures.hub",
]
