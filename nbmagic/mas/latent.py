"""Latent thoughts on a KV cache: prefill, roll out, decode.

A latent step feeds the model its own last hidden state (through a link) as the next
input embedding, instead of sampling a token:

    h_0            = last hidden state after the prompt            (prefill)
    e_t            = link(h_{t-1})          float32 math, cast back to the model dtype
    h_t            = decoder(e_t | KV cache)[last position]         one token-forward, no LM head
    thoughts       = [h_1, ..., h_m]                                 returned as [B, m, d]

Unlike the seed article and the released RecursiveMAS inference (which re-run the whole
growing sequence every step, ``use_cache=False``), each step here is ONE token-forward on
the cache, through the base decoder only (the vocabulary head is never computed).

Batches are LEFT-padded: the last column is a real token for every row, the attention mask
grows by a column of ones per step, and position ids come from the mask
(``cumsum(mask) - 1``), so a row's padding changes none of its results.

There is no ``torch.no_grad`` in :func:`prefill` and :func:`latent_rollout`: inference
callers wrap them in ``torch.inference_mode()``, training callers leave autograd on and
gradients flow from the thoughts back through every step to every link (frozen model
parameters need no grad; the activations stay on the graph). :func:`decode` produces text
and runs under ``no_grad``.

States are consumed, not copied: the cache object is extended in place, so use the state
a call returns and not the one passed in (:func:`fork` copies one to branch from).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from nbmagic.errors import ConfigError
from nbmagic.llm.hf import TextStream, sample_next
from nbmagic.llm.latent import DecodeResult
from nbmagic.mas.links import apply_link

if TYPE_CHECKING:
    from nbmagic.llm.hf import HFChatModel


@dataclass
class LatentState:
    """What a model has read so far: its KV ``cache``, the ``attention_mask`` over every
    cached column (``[B, T]`` long, 0 = padding) and the last position's hidden ``[B, d]``."""

    cache: Any
    attention_mask: Tensor
    last_hidden: Tensor

    @property
    def batch_size(self) -> int:
        return int(self.attention_mask.shape[0])

    @property
    def length(self) -> int:
        """Cached columns, padding included (equals ``cache.get_seq_length()``)."""
        return int(self.attention_mask.shape[1])


def new_cache(model: HFChatModel) -> Any:
    """An empty transformers ``DynamicCache`` for ``model`` (v5: a Cache object, not tuples)."""
    from transformers import DynamicCache

    try:  # transformers 5: per-layer types (sliding windows) come from the config
        return DynamicCache(config=model.model.config)
    except TypeError:  # transformers 4.x
        return DynamicCache()


def positions_from_mask(mask: Tensor, new: int) -> Tensor:
    """Position ids of the last ``new`` columns: real tokens count 0, 1, 2, ...; pads get 0."""
    return (mask.cumsum(-1) - 1).clamp_min(0)[:, -new:]


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: Any = None) -> tuple[Tensor, Tensor]:
    """Token-id lists -> left-padded ``ids [B, L]`` and ``mask [B, L]`` (long)."""
    width = max((len(p) for p in prompts), default=0)
    ids = torch.full((len(prompts), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        if p:
            ids[row, width - len(p) :] = torch.as_tensor(list(p), dtype=torch.long)
            mask[row, width - len(p) :] = 1
    return ids.to(device), mask.to(device)


def embed_prompts(model: HFChatModel, prompts: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """Token-id lists -> left-padded input embeddings ``[B, L, d]`` and mask ``[B, L]``."""
    pad = model.tokenizer.pad_token_id
    ids, mask = left_pad(prompts, 0 if pad is None else pad, model.torch_device)
    return model.embed_ids(ids), mask


def _check_inputs(model: HFChatModel, embeds: Tensor, mask: Tensor) -> None:
    if embeds.dim() != 3 or embeds.shape[-1] != model.hidden_size:
        raise ConfigError(
            f"Embeddings for {model.name} must be [batch, length, {model.hidden_size}], "
            f"got {list(embeds.shape)}."
        )
    if mask.shape != embeds.shape[:2]:
        raise ConfigError(
            f"attention_mask {list(mask.shape)} does not match embeddings {list(embeds.shape[:2])}."
        )
    if mask.shape[1] > 1 and bool((mask[:, 1:] < mask[:, :-1]).any()):
        raise ConfigError(
            "Latent batches must be LEFT-padded (padding before the tokens): with right "
            "padding the last position is a pad and its hidden state is garbage."
        )


def extend(
    model: HFChatModel, embeds: Tensor, attention_mask: Tensor, state: LatentState | None = None
) -> tuple[Tensor, LatentState]:
    """Run ``embeds`` on top of ``state`` (or from scratch); return every position's hidden
    state ``[B, L, d]`` (for training losses through ``model.model.lm_head``) and the new state."""
    mask = attention_mask.to(device=embeds.device, dtype=torch.long)
    _check_inputs(model, embeds, mask)
    if state is None:
        if bool((mask.sum(-1) == 0).any()):
            raise ConfigError("A prompt in the batch is empty: give every row at least one token.")
        cache, full = new_cache(model), mask
    else:
        if state.batch_size != embeds.shape[0]:
            raise ConfigError(f"Batch of {embeds.shape[0]} does not match the state's {state.batch_size}.")
        cache, full = state.cache, torch.cat([state.attention_mask, mask], dim=1)
    if embeds.shape[1] == 0:
        assert state is not None
        return embeds.new_zeros(embeds.shape), LatentState(cache, full, state.last_hidden)
    out = model.decoder(
        inputs_embeds=embeds.to(model.dtype),
        attention_mask=full,
        position_ids=positions_from_mask(full, embeds.shape[1]),
        past_key_values=cache,
        use_cache=True,
    )
    hidden = out.last_hidden_state
    last = hidden[:, -1]
    if state is not None:  # a row whose new chunk is all padding keeps its old last hidden
        last = torch.where(mask[:, -1:].bool(), last, state.last_hidden)
    return hidden, LatentState(out.past_key_values, full, last)


def prefill(
    model: HFChatModel, embeds: Tensor, attention_mask: Tensor, state: LatentState | None = None
) -> LatentState:
    """Read ``embeds [B, L, d]`` (left-padded, ``attention_mask [B, L]``) into a KV cache,
    appending to ``state``'s cache when given (positions continue from its mask)."""
    return extend(model, embeds, attention_mask, state)[1]


def latent_rollout(
    model: HFChatModel,
    state: LatentState,
    steps: int,
    link: nn.Module | None,
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[Tensor, LatentState]:
    """``steps`` latent thoughts: ``e_t = link(h_{t-1})`` appended, ``h_t`` read back.

    One token-forward per step on the KV cache, no LM head. Returns the thoughts
    ``[h_1, ..., h_m]`` as ``[B, steps, d]`` (model dtype) and the extended state.
    ``link=None`` feeds hidden states back unchanged.
    """
    if steps < 0:
        raise ConfigError(f"latent steps must be >= 0, got {steps}.")
    h, cache, start = state.last_hidden, state.cache, state.length
    if steps == 0:
        return h.new_zeros((h.shape[0], 0, h.shape[-1])), state
    decoder, dtype = model.decoder, model.dtype  # get_decoder() walks attributes: once, not per step
    # the mask grows by a column of ones per step and each new position is one more than the
    # last: build both once and hand the loop views, instead of a concatenation and a cumsum
    # over the whole sequence every step
    mask = torch.cat([state.attention_mask, state.attention_mask.new_ones((state.batch_size, steps))], dim=1)
    positions = state.attention_mask.sum(-1, keepdim=True) + torch.arange(steps, device=mask.device)
    thoughts: list[Tensor] = []
    for t in range(steps):
        e = apply_link(link, h, dtype)  # [B, d]
        out = decoder(
            inputs_embeds=e[:, None, :],
            attention_mask=mask[:, : start + t + 1],
            position_ids=positions[:, t : t + 1],
            past_key_values=cache,
            use_cache=True,
        )
        cache = out.past_key_values
        h = out.last_hidden_state[:, -1]
        thoughts.append(h)
        if on_step is not None:
            on_step(t + 1, steps)
    return torch.stack(thoughts, dim=1), LatentState(cache, mask, h)


@torch.no_grad()
def decode_with_usage(
    model: HFChatModel,
    state: LatentState | None,
    prompt_embeds: Tensor | None,
    prompt_mask: Tensor | None,
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float | None = None,
    stop: Sequence[str] = (),
    on_token: Callable[[str], None] | None = None,
) -> DecodeResult:
    """:func:`decode`, also returning token counts and finish reasons per row."""
    if prompt_embeds is not None and prompt_embeds.shape[1] > 0:
        if prompt_mask is None:
            prompt_mask = torch.ones(prompt_embeds.shape[:2], dtype=torch.long, device=prompt_embeds.device)
        state = prefill(model, prompt_embeds, prompt_mask, state)
    if state is None:
        raise ConfigError("decode needs a state or a prompt to start from.")
    head = model.model.get_output_embeddings()
    batch = state.batch_size
    streams = [TextStream(model.tokenizer, stop, on_token if row == 0 else None) for row in range(batch)]
    eos = model.eos_token_ids
    done = [False] * batch
    reasons = ["length"] * batch
    counts = [0] * batch
    h, mask, cache = state.last_hidden, state.attention_mask, state.cache
    ones = torch.ones((batch, 1), dtype=mask.dtype, device=mask.device)
    position = mask.sum(-1, keepdim=True)  # of the next token: one more per step
    decoder = model.decoder
    softcap = getattr(model.model.config, "final_logit_softcapping", None)  # Gemma 2/3
    for step in range(max_new_tokens):
        logits = head(h).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        nxt = sample_next(logits, temperature, top_p)
        for row, tok in enumerate(nxt.tolist()):
            if done[row]:
                continue
            counts[row] += 1
            if tok in eos or streams[row].push(tok):
                done[row], reasons[row] = True, "stop"
        if all(done) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, ones], dim=1)
        out = decoder(
            inputs_embeds=model.embed_ids(nxt[:, None]).to(model.dtype),
            attention_mask=mask,
            position_ids=position,
            past_key_values=cache,
            use_cache=True,
        )
        cache, h, position = out.past_key_values, out.last_hidden_state[:, -1], position + 1
    texts = [s.finish() for s in streams]
    return DecodeResult(texts, counts, reasons)


def decode(
    model: HFChatModel,
    state: LatentState | None,
    prompt_embeds: Tensor | None,
    prompt_mask: Tensor | None,
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    stop: Sequence[str] = (),
    on_token: Callable[[str], None] | None = None,
    top_p: float | None = None,
) -> list[str]:
    """Prefill ``prompt_embeds`` on top of ``state``, then generate text per row.

    Greedy at temperature 0, else sampled (``top_p`` optional). A row ends at EOS, a stop
    string (cut off, never streamed) or ``max_new_tokens``. ``on_token`` streams row 0.
    """
    return decode_with_usage(
        model, state, prompt_embeds, prompt_mask, max_new_tokens=max_new_tokens,
        temperature=temperature, top_p=top_p, stop=stop, on_token=on_token,
    ).texts


def fork(state: LatentState) -> LatentState:
    """A copy of ``state`` to branch from: extending one leaves the other as it was.

    Cheap (no tensor copies) and autograd-safe: ``DynamicCache`` layers grow by
    ``torch.cat`` into new tensors, so copying the layer objects is enough.
    """
    cache = copy.copy(state.cache)
    cache.layers = [copy.copy(layer) for layer in state.cache.layers]
    return LatentState(cache, state.attention_mask, state.last_hidden)
