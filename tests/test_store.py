"The model store: names, atomic files, bit-exact save/load, rename/copy/delete with everything a model owns."
import itertools, json, os
import pytest
import torch
from hypothesis import given, settings, strategies as st
from crystalline_nb.core import atomic_write_bytes
from crystalline_nb.workspace import Workspace, check_name, resolve_home
from crystalline_nb.config import POSITIONALS, ATTENTION_BIASES, EMBEDDING_INITS


@pytest.mark.parametrize("init,pos,bias", list(itertools.product(EMBEDDING_INITS, POSITIONALS, ATTENTION_BIASES)))
def test_save_load_bit_exact(home, init, pos, bias):
    ws = Workspace(home)
    lm = ws.create(
        "m", preset_name="nano", embedding_init=init, positional=pos, attention_bias=bias, d_ff=100, target_epochs=7
    )
    with torch.no_grad():
        for p in lm.model.parameters():
            p.add_(torch.randn_like(p))   # every tensor, LayerNorms included, non-default
    lm.state.update(epochs_trained=2.5, tokens_seen=12345, steps=77)
    lm.state["training"].update(batch_size=3, seq_len=17, lr=1.5e-4)
    ws.save(lm)
    back = ws.load("m")
    a, b = lm.model.state_dict(), back.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert back.config == lm.config and back.config.d_ff == 100
    assert back.state == lm.state
    assert back.tokenizer.kind == "byte"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_names_never_escape(name):
    try:
        check_name(name)
    except ValueError as e:
        assert str(e).startswith("invalid model name")
        return
    assert "/" not in name and "\x00" not in name and not name.startswith(".") and 1 <= len(name) <= 64


def test_resolve_home(monkeypatch, tmp_path):
    monkeypatch.delenv("CLLM_HOME", raising=False)
    assert str(resolve_home()) == "data"
    monkeypatch.setenv("CLLM_HOME", str(tmp_path))
    assert resolve_home() == tmp_path
    assert resolve_home(tmp_path / "x") == tmp_path / "x"


def test_rename_copy_delete_move_everything(home):
    ws = Workspace(home)
    ws.create("a", preset_name="nano")
    (ws.path("a") / "history").mkdir()
    (ws.path("a") / "history" / "steps.csv").write_text("step,loss\n1,2.0\n")
    ws.rename("a", "b")
    assert ws.names() == ["b"] and (ws.path("b") / "history" / "steps.csv").exists()
    ws.copy("b", "c")
    assert (ws.path("c") / "history" / "steps.csv").read_text() == "step,loss\n1,2.0\n"
    with pytest.raises(ValueError, match="already exists"):
        ws.rename("b", "c")
    with pytest.raises(ValueError, match="already exists"):
        ws.copy("b", "c")
    with pytest.raises(ValueError, match="no model named"):
        ws.rename("zzz", "y")
    ws.delete("b")
    assert ws.names() == ["c"]
    assert [p.name for p in ws.models_dir.iterdir() if not p.name.startswith(".busy")] == ["c"]


def test_busy_model_cannot_be_renamed_or_deleted(home):
    import fcntl
    ws = Workspace(home)
    ws.create("a", preset_name="nano")
    with open(ws.path("a") / ".busy", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        # a lock held through another file description, as another process would hold it
        with pytest.raises(ValueError, match="in use by another process"):
            ws.delete("a")
        with pytest.raises(ValueError, match="in use by another process"):
            ws.rename("a", "b")
    ws.rename("a", "b")


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "f.json"
    atomic_write_bytes(p, b"old")
    def boom(*a): raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["f.json"]


def test_damaged_state_gives_one_line(home):
    ws = Workspace(home)
    ws.create("a", preset_name="nano")
    (ws.path("a") / "state.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read .*state.json"):
        ws.load("a")
