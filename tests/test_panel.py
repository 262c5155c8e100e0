"The panel's handlers, called as the buttons call them (no browser): every action changes the workspace as the CLI would."
import re, time
from pathlib import Path
import pytest
from crystalline_nb.panel import ControlPanel, _safe_filename
from crystalline_nb.workspace import Workspace

CORPUS = "".join(f"Line {i}: the clock lattice has twelve, sixty, sixty and one hundred positions.\n" for i in range(200)).encode()
text = lambda w: re.sub("<[^>]+>", "", w.value)


@pytest.fixture
def panel(home):
    p = ControlPanel(home)
    p.new_name.value, p.new_preset.value, p.new_layers.value = "toy", "nano", 2
    p.create_model()
    assert "created toy" in text(p.message)
    return p


def test_create_and_bad_input_shown_in_one_line(panel):
    assert panel.model.value == "toy" and panel.ws.names() == ["toy"]
    assert "cllm --home" in text(panel.cli) and " new toy --preset nano --layers 2" in text(panel.cli)
    for name, msg in [("toy", "already exists"), ("../x", "invalid model name"), ("", "invalid model name")]:
        panel.new_name.value = name; panel.create_model()
        assert msg in text(panel.message) and text(panel.message).startswith("error:") and "\n" not in text(panel.message)
    panel.new_name.value = "b"; panel.new_tokenizer.value = "bpe"; panel.create_model()
    assert "needs a corpus" in text(panel.message)
    assert panel.ws.names() == ["toy"]


def test_upload_goes_through_ingestion(panel):
    panel.upload([dict(name="../../etc/notes.txt", content=CORPUS), dict(name="pic.png", content=b"\x89PNG\x00"),
                  dict(name="", content=b"abc text")])
    msg = text(panel.message)
    assert "added 2 sources" in msg and "skipped" in msg and "unsupported file type" in msg
    ing = panel.ws.path("toy") / "ingested"
    assert (ing / "notes.txt").exists() and (ing / "upload").exists()
    assert not list((panel.ws.path("toy") / "inbox").iterdir())
    assert "2</b> sources" in panel.queue_table.value
    assert " ingest toy" in text(panel.cli)
    panel.upload([dict(name="again.txt", content=CORPUS)])
    assert "1 already in the queue" in text(panel.message)


def test_safe_filenames():
    assert _safe_filename("../../etc/passwd") == "passwd"
    assert _safe_filename("a\\b\\c.txt") == "c.txt"
    assert _safe_filename("..") == "upload" and _safe_filename("") == "upload"
    assert _safe_filename("wé\x00ird;rm -rf.md") == "w__ird_rm -rf.md"


def test_train_stop_and_disk(panel):
    panel.upload([dict(name="c.txt", content=CORPUS * 5)])
    panel.batch.value, panel.seq.value, panel.epochs.value, panel.lr.value = 4, 32, 30, 3e-3
    assert "train toy --epochs 30 --batch-size 4 --seq-len 32 --lr 3.00e-03" in text(panel.cli)
    panel.start_training()
    assert panel.train_thread.is_alive() and panel.start_btn.disabled and not panel.stop_btn.disabled and panel.model.disabled
    deadline = time.time() + 120
    while len(panel.plot.live["x"]) < 5 and time.time() < deadline: time.sleep(0.05)
    assert len(panel.plot.live["x"]) >= 5
    panel.start_training()
    assert "already running" in text(panel.message)
    t0 = time.time(); panel.stop_training(); panel.wait(30)
    assert not panel.train_thread.is_alive() and time.time() - t0 < 10
    assert "stopped" in text(panel.message) and not panel.start_btn.disabled and panel.stop_btn.disabled
    st = panel.ws.read_state("toy")
    assert st["steps"] >= 5 and 0 < st["epochs_trained"] < 30 and st["training"]["batch_size"] == 4
    assert panel.plot.renders >= 1 and panel.plot.image.value[:4] == b"\x89PNG"
    assert "epoch" in text(panel.status) and "tokens/s" in text(panel.status)


def test_layers_grow_never_shrink(panel):
    panel.upload([dict(name="c.txt", content=CORPUS)])
    assert panel.layers.min == 2 and "can grow, never shrink" in panel.layers_note.value
    panel.layers.value = 1
    assert panel.layers.value == 2                                                   # the slider cannot go below
    panel.layers.value, panel.batch.value, panel.seq.value, panel.epochs.value = 3, 4, 32, 1
    assert "1 new layer" in panel.layers_note.value and "--layers 3" in text(panel.cli)
    panel.start_training(); panel.wait(120)
    assert "target reached" in text(panel.message), text(panel.message)
    assert panel.ws.info("toy")["n_layer"] == 3 and panel.layers.min == 3


def test_not_enough_data_is_shown(panel):
    panel.upload([dict(name="tiny.txt", content=b"tiny")])
    panel.start_training(); panel.wait(30)
    assert "more tokens" in text(panel.message) and text(panel.message).startswith("error:")
    assert not panel.start_btn.disabled


def test_generate_rename_compare_history_delete(panel):
    panel.upload([dict(name="c.txt", content=CORPUS)])
    panel.batch.value, panel.seq.value, panel.epochs.value = 4, 32, 1
    panel.start_training(); panel.wait(120)
    panel.prompt.value, panel.max_tokens.value, panel.temperature.value = "Line", 30, 0
    panel.generate(); panel.wait(60)
    assert panel.gen_out.value.startswith("Line") and len(panel.gen_out.value) > 4
    assert "generate toy --prompt Line" in text(panel.cli)
    panel.ws.copy("toy", "twin")
    panel.refresh()
    assert panel.compare.options == ("twin",)
    panel.compare.value = ("twin",)
    assert len(panel.plot.compare) == 1
    panel.hist_models.value = ("toy", "twin"); panel.plot_histories()
    assert panel.hist_img.value[:4] == b"\x89PNG" and "twin" in panel.hist_table.value
    panel.rename_to.value = "renamed"; panel.rename_model()
    assert set(panel.ws.names()) == {"renamed", "twin"} and panel.model.value == "renamed"
    panel.ask_delete()
    assert panel.delete_confirm.layout.display == "" and "renamed" in panel.delete_confirm.description
    assert set(panel.ws.names()) == {"renamed", "twin"}                              # nothing deleted before confirming
    panel.delete_model()
    assert panel.ws.names() == ["twin"] and panel.model.value == "twin"
