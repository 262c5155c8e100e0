"Both tokenizers round-trip any text exactly; BPE is trained at creation and saved with the model."
import pytest
from hypothesis import given, settings, strategies as st
from crystalline_nb.tokenizer import ByteTokenizer, BPETokenizer, load_tokenizer

BPE = BPETokenizer.train(
    ["the crystal clock ticks twelve times; sixty minutes make the hour."] * 30 + ["ünïcödé 日本 🧪"],
    vocab_size=320,
)


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


PIECES = [
    "the",
    " crystal",
    "clock",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\t",
    "ünïcödé",
    " 日本",
    "🧪",
    "12",
    " 345",
    "'s",
    "...",
    "x",
    " (a)",
    "\r\n",
    "\u00a0",
    "don't",
    " ½",
    "é",
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=5), min_size=1, max_size=400),
       st.integers(min_value=4, max_value=64))
def test_bpe_cut_at_word_starts_gives_the_ids_of_one_call(parts, size):
    "Long texts are cut before word-starting spaces and encoded on every core: the ids must not change."
    from crystalline_nb.tokenizer import split_at_words
    text = "".join(parts)
    pieces = split_at_words(text, size=size)
    assert "".join(pieces) == text
    assert [i for p in pieces for i in BPE.encode(p)] == BPE.encode(text)


def test_bpe_parallel_encode_of_real_files():
    import sysconfig
    from pathlib import Path
    from crystalline_nb.tokenizer import PARALLEL_MIN
    lib = Path(sysconfig.get_paths()["stdlib"])
    text = "".join((lib / f).read_text() for f in ("typing.py", "argparse.py", "inspect.py", "pydoc.py"))
    bpe = BPETokenizer.train([text[: len(text) // 2]], vocab_size=2000)
    assert len(text) > 4 * PARALLEL_MIN
    assert bpe.encode_array(text).tolist() == bpe.encode(text)
