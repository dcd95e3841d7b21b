"""Figures for models that see images: what the loopback OpenAI-compatible server receives."""

from __future__ import annotations

import base64
import io

import pytest

from nbmagic.llm.vision import accepts_images, with_images

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")


def _png(width_in: float = 8, height_in: float = 6, dpi: int = 100) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width_in, height_in), dpi=dpi)
    ax.plot([1, 2, 3], [3, 1, 2])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _data_url_size(url: str) -> tuple[int, int]:
    head, _, data = url.partition(",")
    assert head == "data:image/png;base64"
    with Image.open(io.BytesIO(base64.b64decode(data))) as img:
        return img.size


@pytest.fixture
def vision_server(openai_server):
    openai_server.models = ["test-model", "gpt-4o-mini", "my-local-vlm"]
    return openai_server


def _load(server, name):
    from nbmagic.llm.specs import load_model

    return load_model(f"openai-compat:{name}@{server.url}", max_retries=0, timeout=30)


def test_a_vision_model_gets_the_figure_as_a_downscaled_data_url(vision_server):
    model = _load(vision_server, "gpt-4o-mini")
    assert accepts_images(model)
    png = _png()  # 800x600
    vision_server.queue("It rises, then falls.")
    model.chat(with_images([{"role": "user", "content": "What does the plot show?"}], [png]))
    (body,) = vision_server.chat_requests()
    content = body["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "What does the plot show?"}
    assert content[1]["type"] == "image_url"
    width, height = _data_url_size(content[1]["image_url"]["url"])
    assert (width, height) == (512, 384)  # longest side 512, aspect kept
    assert len(content[1]["image_url"]["url"]) < len(base64.b64encode(png))


def test_a_text_model_gets_the_text_only(vision_server):
    model = _load(vision_server, "test-model")
    assert not accepts_images(model)
    vision_server.queue("It rises, then falls.")
    model.chat(with_images([{"role": "user", "content": "What does the plot show?"}], [_png()]))
    (body,) = vision_server.chat_requests()
    assert body["messages"][-1]["content"] == "What does the plot show?"


def test_the_environment_names_more_vision_models(vision_server, monkeypatch):
    model = _load(vision_server, "my-local-vlm")
    assert not accepts_images(model)
    monkeypatch.setenv("NBMAGIC_VISION_MODELS", "other, my-local-*")
    assert accepts_images(model)
    model.accepts_images = False  # an explicit answer wins
    assert not accepts_images(model)


def test_a_gguf_model_without_a_projector_takes_no_images(tiny_gguf):
    pytest.importorskip("llama_cpp")
    from nbmagic.llm.specs import load_model

    model = load_model(f"gguf:{tiny_gguf}")
    try:
        assert model.backend == "gguf" and not accepts_images(model)
    finally:
        model.close()


def test_the_agent_shows_a_vision_model_its_plots_when_it_writes_the_answer(vision_server, ipython_shell, tmp_path,
                                                                           monkeypatch):
    from nbmagic.agent.core import NotebookAgent
    from nbmagic.agent.prompts import ANSWER_HEADING
    from nbmagic.testing.agent_scripts import make_responder, write_sales_csv

    write_sales_csv(tmp_path / "sales.csv")
    monkeypatch.chdir(tmp_path)
    answers: list[dict] = []
    responder = make_responder("works")

    def respond(body):
        if any(ANSWER_HEADING in str(m.get("content")) for m in body["messages"][-1:]):
            answers.append(body)
        return responder(body)

    vision_server.set_responder(respond)
    model = _load(vision_server, "gpt-4o-mini")
    result = NotebookAgent(model, planner="single", cell_timeout=20, load_files=False).run(
        "Analyze sales.csv: the top 5 products by revenue and a monthly revenue trend plot", shell=ipython_shell)
    assert result.ok and answers
    content = answers[-1]["messages"][-1]["content"]
    assert isinstance(content, list) and content[0]["type"] == "text"
    assert "[figure] Figure (1 axes" in content[0]["text"]  # the description, as every model reads it
    images = [p for p in content if p["type"] == "image_url"]
    assert len(images) == 1 and max(_data_url_size(images[0]["image_url"]["url"])) <= 512


def test_doctor_says_which_models_take_images(monkeypatch):
    from nbmagic.llm.doctor import collect, format_report
    from nbmagic.llm.vision import describe_spec

    assert describe_spec("openai:gpt-4o-mini").startswith("yes")
    assert describe_spec("ollama:qwen2.5-coder:7b").startswith("text only")
    assert "clip_model_path" in describe_spec("gguf:/models/x.gguf")
    monkeypatch.setenv("NBMAGIC_VISION_MODELS", "qwen2.5-coder*")
    assert describe_spec("ollama:qwen2.5-coder:7b").startswith("yes")
    report = collect(model="openai:gpt-4o")
    assert report["images"].startswith("yes")
    assert "\n  images: yes: figures go as downscaled images too" in format_report(report)
