"Models written by the first released layout (before the package was restructured) open, show and resume exactly."
import json, shutil
from pathlib import Path
import pytest
from crystalline_nb.workspace import Workspace
from crystalline_nb.trainer import Trainer
from crystalline_nb.history import history

FIX = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def old_model(tmp_path):
    "A copy of a model written by the earlier layout: 12 steps trained, checkpointed inside its first epoch."
    shutil.copytree(FIX / "v1_model", tmp_path / "models" / "v1")
    return Workspace(tmp_path)


def test_old_model_opens(old_model):
    ws = old_model
    info = ws.info("v1")
    assert (info["steps"], info["n_layer"], info["queue"]["sources"]) == (12, 2, 1)
    assert ws.ledger("v1")[0]["status"] == "training" and 0 < ws.ledger("v1")[0]["epochs"] < 1
    lm = ws.load("v1")
    assert lm.state["data"]["offset"] == 768 and lm.tokenizer.vocab_size == lm.config.vocab_size
    assert history(ws, "v1").sizes["step"] == 12


def test_old_model_resumes_exactly(old_model):
    "Eight more steps give the losses that the earlier version computed in one uninterrupted run of 20 steps."
    expected = json.loads((FIX / "v1_model_continued.json").read_text())
    s = Trainer(old_model, "v1", save_every=5).run(max_steps=8)
    assert s["total_steps"] == 20
    ds = history(old_model, "v1")
    got = [float(ds.loss.sel(step=k)) for k in expected["steps"]]
    assert got == pytest.approx(expected["loss"], abs=1e-6), (got, expected["loss"])
