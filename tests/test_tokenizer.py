"Both tokenizers round-trip any text exactly; BPE is trained at creation and saved with the model."
import pytest
from hypothesis import given, settings, strategies as st
from crystalline_nb.tokenizer import ByteTokenizer, BPETokenizer, load_tokenizer

BPE = BPETokenizer.train(["the crystal clock ticks twelve times; sixty minutes make the hour."] * 30 + ["ünïcödé 日本 🧪"], vocab_size=320)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_byte_round_trip(s):
    t = ByteTokenizer()
    ids = t.encode(s)
    assert all(3 <= i < 259 for i in ids)
    assert t.decode(ids) == s


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_bpe_round_trip(s):
    ids = BPE.encode(s)
    assert all(0 <= i < BPE.vocab_size for i in ids)
    assert BPE.decode(ids) == s


def test_specials_and_save(tmp_path):
    for t in (ByteTokenizer(), BPE):
        assert (t.pad_id, t.bos_id, t.eos_id) == (0, 1, 2)
        t.save(tmp_path / "t.json")
        u = load_tokenizer(tmp_path / "t.json")
        assert u.vocab_size == t.vocab_size and u.encode("crystal clock") == t.encode("crystal clock")


def test_bpe_vocab_bounds():
    with pytest.raises(ValueError, match="vocab_size must be between"):
        BPETokenizer.train(["abc"], vocab_size=100)


def test_damaged_tokenizer_file(tmp_path):
    (tmp_path / "t.json").write_bytes(b"\xff\xfe garbage")
    with pytest.raises(ValueError, match="cannot read tokenizer"):
        load_tokenizer(tmp_path / "t.json")
