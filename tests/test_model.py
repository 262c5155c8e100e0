"The model learns, is causal, grows without changing its function, and has the parameter count of the formula."
import itertools, math
from dataclasses import replace
import pytest
import torch
from hypothesis import given, settings, strategies as st
from crystalline_nb.model import CLLM
from crystalline_nb.config import (
    CLLMConfig,
    param_count,
    preset,
    PRESETS,
    POSITIONALS,
    ATTENTION_BIASES,
    EMBEDDING_INITS,
)

SMALL = CLLMConfig(vocab_size=259, d_model=32, n_layer=2, n_head=2, d_ff=64, max_seq_len=64)
COMBOS = list(itertools.product(EMBEDDING_INITS, POSITIONALS, ATTENTION_BIASES))


def _corpus(T=32, B=8):
    # a tiny repeated corpus: one sentence over and over, cut at random offsets
    text = ("the crystal lattice keeps time like a clock. " * 20).encode()
    ids = torch.tensor(list(text)) + 3
    starts = torch.randint(0, len(ids) - T - 1, (B,), generator=torch.Generator().manual_seed(0))
    x = torch.stack([ids[s:s + T] for s in starts])
    y = torch.stack([ids[s + 1:s + T + 1] for s in starts])
    return x, y


@pytest.mark.parametrize("init,pos,bias", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_loss_falls_for_every_option(init, pos, bias):
    torch.manual_seed(0)
    m = CLLM(replace(SMALL, embedding_init=init, positional=pos, attention_bias=bias))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    x, y = _corpus()
    losses = []
    for _ in range(40):
        _, loss = m(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(l) for l in losses)
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])


@pytest.mark.parametrize("init,pos,bias", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_param_count_matches_formula(init, pos, bias):
    cfg = replace(SMALL, embedding_init=init, positional=pos, attention_bias=bias)
    assert CLLM(cfg).n_params == param_count(cfg)


@pytest.mark.parametrize("name", ["nano", "micro", "tiny"])
def test_preset_param_count(name):
    cfg = preset(name)
    assert CLLM(cfg).n_params == param_count(cfg)
    d, l, h, f, t = PRESETS[name]
    # the formula written out once more by hand, for the preset defaults (rope positions, no bias)
    assert param_count(cfg) == 259 * d + l * (4 * d * d + 9 * d + 2 * d * f + f) + 2 * d


@settings(max_examples=25, deadline=None)
@given(
    cut=st.integers(1, 19),
    seed=st.integers(0, 1000),
    pos=st.sampled_from(POSITIONALS),
    bias=st.sampled_from(ATTENTION_BIASES),
)
def test_causal(cut, seed, pos, bias):
    torch.manual_seed(seed)
    m = CLLM(replace(SMALL, positional=pos, attention_bias=bias)).eval()
    a = torch.randint(0, 259, (2, 20))
    b = a.clone()
    b[:, cut:] = torch.randint(0, 259, (2, 20 - cut))
    with torch.no_grad():
        assert torch.equal(m(a)[:, :cut], m(b)[:, :cut])


@pytest.mark.parametrize("pos,bias", list(itertools.product(POSITIONALS, ATTENTION_BIASES)))
def test_growth_keeps_logits_after_training(pos, bias):
    torch.manual_seed(0)
    m = CLLM(replace(SMALL, positional=pos, attention_bias=bias))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    x, y = _corpus()
    for _ in range(5):
        _, loss = m(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        before_logits, before_loss = m(x, y)
    assert m.grow(5) == 3
    with torch.no_grad():
        after_logits, after_loss = m(x, y)
    assert m.cfg.n_layer == 5 and len(m.blocks) == 5
    assert torch.allclose(before_logits, after_logits, atol=1e-6, rtol=0)
    assert abs(before_loss.item() - after_loss.item()) < 1e-6
    assert m.n_params == param_count(m.cfg)
    # the grown model still trains (new blocks receive gradients)
    m.train()
    _, loss = m(x, y)
    loss.backward()
    assert m.blocks[-1].attn.proj.weight.grad.abs().sum() > 0


def test_shrink_refused_with_reason():
    m = CLLM(SMALL)
    with pytest.raises(ValueError, match="cannot shrink from 2 to 1 layers"):
        m.grow(1)
    assert m.cfg.n_layer == 2 and len(m.blocks) == 2


def test_no_overflow_for_extreme_ids_and_positions():
    cfg = replace(SMALL, vocab_size=200_000, max_seq_len=4096, attention_bias="angular", d_model=16, n_head=2, d_ff=16)
    torch.manual_seed(0)
    m = CLLM(cfg).eval()
    x = torch.tensor([[0, 1, 199_999, 131_071, 144_000]])
    with torch.no_grad():
        assert torch.isfinite(m(x)).all()
    assert torch.isfinite(m.tok_emb.weight).all()
    with pytest.raises(ValueError, match="exceeds this model's max_seq_len"):
        m(torch.zeros(1, 4097, dtype=torch.long))


def test_seq_len_limit_and_bad_configs():
    for bad, msg in [
        (dict(d_model=30, n_head=4), "divisible"),
        (dict(n_layer=0), "n_layer"),
        (dict(vocab_size=-1), "vocab_size"),
        (dict(attention_bias="cymatic"), "attention_bias"),
        (dict(d_model=10**9), "d_model"),
        (dict(n_layer=2.5), "integer"),
    ]:
        with pytest.raises(ValueError, match=msg):
            replace(SMALL, **bad)


@pytest.mark.parametrize("pos", ["rope", "learned"])
def test_model_without_biases_trains_grows_and_counts(pos):
    torch.manual_seed(0)
    m = CLLM(replace(SMALL, positional=pos, bias=False))
    assert not [n for n, _ in m.named_parameters() if n.endswith(".bias")]
    assert m.n_params == param_count(m.cfg) < param_count(replace(m.cfg, bias=True))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    x, y = _corpus()
    losses = []
    for _ in range(20):
        _, loss = m(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    m.eval()
    with torch.no_grad():
        before = m(x)
    m.grow(4)
    with torch.no_grad():
        assert torch.allclose(before, m(x), atol=1e-6, rtol=0)
    assert m.n_params == param_count(m.cfg)
