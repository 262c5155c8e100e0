"""The panel's handlers, called as the buttons call them (no browser): every action changes the workspace as the CLI
would."""

import re, time
from pathlib import Path
import pytest
import math
from crystalline_nb.panel import PALETTE, ControlPanel, _safe_filename
from crystalline_nb.workspace import Workspace
from crystalline_nb.device import cpu_bf16_units

CORPUS = "".join(
    f"Line {i}: the clock lattice has twelve, sixty, sixty and one hundred positions.\n" for i in range(200)
).encode()
text = lambda w: re.sub("<[^>]+>", "", w.value)


@pytest.fixture
def panel(home):
    p = ControlPanel(home)
    p.models.new_name.value, p.models.new_preset.value, p.models.new_layers.value = "toy", "nano", 2
    p.models.create()
    assert "created toy" in text(p.message)
    return p


def test_a_preset_resets_the_form_marks_changes_says_the_size_and_create_clears_it(home, tmp_path):
    from crystalline_nb.config import param_count, preset
    p = ControlPanel(home)
    m = p.models
    (tmp_path / "c.txt").write_text("clock lattice " * 400)
    m.new_tokenizer.value, m.new_corpus.value, m.new_pos.value, m.new_bias.value = (
        "bpe",
        str(tmp_path),
        "clock",
        "angular",
    )
    m.new_vocab.value = 300
    assert {"tokenizer", "positional", "attention_bias", "vocab_size"} <= set(m.changed())
    assert "cllm-changed" in m.new_pos._dom_classes and "cllm-changed" not in m.new_layers._dom_classes
    m.new_preset.value = "nano"  # a nano baseline: nothing of the previous choices stays
    assert m.changed() == [] and m.new_corpus.value == "" and m.new_tokenizer.value == "byte"
    assert (m.new_pos.value, m.new_bias.value, m.new_layers.value, m.new_width.value) == ("rope", "none", 2, 64)
    assert m.new_pos.tooltip.startswith("position encoding: rope") and m.new_bias.tooltip  # help on hover
    assert not any("cllm-changed" in w._dom_classes for w in m.fields.values())
    assert f"{param_count(preset('nano')):,} parameters" in text(m.size) and "2 layers, width 64" in text(m.size)
    m.new_heads.value = 3  # 64 is not divisible by 3: said at once, before Create
    assert "cannot be made" in text(m.size) and "divisible" in text(m.size)
    m.new_heads.value, m.new_layers.value = 2, 3
    assert m.changed() == ["n_layer"] and f"{param_count(preset('nano', n_layer=3)):,} parameters" in text(m.size)
    m.new_name.value = "base"
    m.create()
    assert p.ws.config("base").n_layer == 3 and text(p.cli).endswith("new base --preset nano --layers 3")
    assert m.new_name.value == "" and m.new_preset.value == "tiny" and m.changed() == []  # cleared for the next


def test_create_and_bad_input_shown_in_one_line(panel):
    assert panel.model.value == "toy" and panel.ws.names() == ["toy"]
    assert "cllm --home" in text(panel.cli) and text(panel.cli).endswith(" new toy --preset nano")  # nano's 2 layers
    for name, msg in [("toy", "already exists"), ("../x", "invalid model name"), ("", "invalid model name")]:
        panel.models.new_name.value = name
        panel.models.create()
        assert (
            msg in text(panel.message) and text(panel.message).startswith("error:") and "\n" not in text(panel.message)
        )
    panel.models.new_name.value = "b"
    panel.models.new_tokenizer.value = "bpe"
    panel.models.create()
    assert "needs a corpus" in text(panel.message)
    assert panel.ws.names() == ["toy"]


def test_upload_goes_through_ingestion(panel):
    panel.data.upload([dict(name="../../etc/notes.txt", content=CORPUS), dict(name="pic.png", content=b"\x89PNG\x00"),
                  dict(name="", content=b"abc text")])
    msg = text(panel.message)
    assert "added 2 sources" in msg and "skipped" in msg and "unsupported file type" in msg
    ing = panel.ws.path("toy") / "ingested"
    assert (ing / "notes.txt").exists() and (ing / "upload").exists()
    assert not list((panel.ws.path("toy") / "inbox").iterdir())
    assert "2</b> sources" in panel.data.queue_table.value
    assert " ingest toy" in text(panel.cli)
    panel.data.upload([dict(name="again.txt", content=CORPUS)])
    msg = text(panel.message)  # the duplicate is named, with the source that holds its text, and counted once
    assert "1 already in the queue" in msg and "already in the queue: inbox/again.txt (same text as inbox/" in msg
    assert msg.count("1 already") == 1
    short = (
        b"<html><body><main><p>"
        + b"A page of 115 characters, less main text than any route accepts. " * 2
        + b"</p></main></body></html>"
    )
    panel.data.upload([dict(name="short.html", content=short)])
    assert "too short" in text(panel.message) and "an HTML page needs 200" in text(
        panel.message
    )  # the crawler's rule too
    table = panel.data.queue_table.value                                      # the refusals are listed with reasons
    assert "2 refused sources, with the reasons" in table and "pic.png" in table and "unsupported file type" in table
    assert table.index("short.html") < table.index("pic.png")                  # the latest first


def test_safe_filenames():
    assert _safe_filename("../../etc/passwd") == "passwd"
    assert _safe_filename("a\\b\\c.txt") == "c.txt"
    assert _safe_filename("..") == "upload" and _safe_filename("") == "upload"
    assert _safe_filename("wé\x00ird;rm -rf.md") == "w__ird_rm -rf.md"


def test_train_stop_and_disk(panel):
    "Train and Stop; other models stay browsable during the run; afterwards status and header say the final state."
    panel.ws.create("other", preset_name="nano")
    panel.refresh(select="toy")
    panel.data.upload([dict(name="c.txt", content=CORPUS * 5)])
    panel.train.batch.value, panel.train.seq.value, panel.train.epochs.value, panel.train.lr.value = 4, 32, 30, 3e-3
    assert "train toy --epochs 30 --batch-size 4 --seq-len 32 --lr 3.00e-03" in text(panel.cli)
    panel.train.start()
    assert panel.train.thread.is_alive() and panel.train.start_btn.disabled and not panel.train.stop_btn.disabled
    assert not panel.model.disabled and dict(panel.model.options)["toy  ● training"] == "toy"  # free, and marked
    deadline = time.time() + 120
    while len(panel.train.plot.live["y"]) < 5 and time.time() < deadline:
        time.sleep(0.05)
    assert len(panel.train.plot.live["y"]) >= 5
    # a run's start notes join the message line, as `cllm train` prints them (this one where the CPU has bf16 units)
    assert ("note: this CPU computes bf16 products" in text(panel.message)) == cpu_bf16_units()
    panel.train.start()
    assert "already running" in text(panel.message)
    panel.model.value = "other"  # browse another model while toy trains
    assert "follows the run of toy" in text(panel.train.run_note) and not panel.gen.button.disabled
    assert not panel.models.delete_btn.disabled and "other" in text(panel.summary)
    assert "empty" in text(panel.data.queue_table)  # the Data tab shows other's (empty) queue
    panel.model.value = "toy"
    assert panel.gen.button.disabled and panel.models.delete_btn.disabled and text(panel.train.run_note) == ""
    panel.train.stop()
    panel.wait(600)
    assert not panel.train.thread.is_alive()
    assert "stopped" in text(panel.message) and not panel.train.start_btn.disabled and panel.train.stop_btn.disabled
    st = panel.ws.read_state("toy")
    assert st["steps"] >= 5 and 0 < st["epochs_trained"] < 30 and st["training"]["batch_size"] == 4
    plot = panel.train.plot
    assert plot.renders >= 1 and len(plot.view.live) == 5 * 8 * len(plot.live["y"])  # every point went to the browser
    # the final state, read from disk, in the status and the header alike; nothing says "stopping" any more
    assert f"{st['epochs_trained']:.3f} of 30 epochs in {st['steps']:,} steps" in text(panel.train.status)
    assert f"epoch {st['epochs_trained']:.3f}/30 · step {st['steps']}," in text(panel.summary)
    assert "stopping" not in text(panel.train.status) and list(panel.model.options) == ["other", "toy"]


def test_layers_grow_never_shrink(panel):
    panel.data.upload([dict(name="c.txt", content=CORPUS)])
    assert panel.train.layers.min == 2 and "can grow, never shrink" in panel.train.layers_note.value
    panel.train.layers.value = 1
    assert panel.train.layers.value == 2                                                   # the slider cannot go below
    panel.train.layers.value, panel.train.batch.value, panel.train.seq.value, panel.train.epochs.value = 3, 4, 32, 1
    assert "1 new layer" in panel.train.layers_note.value and "--layers 3" in text(panel.cli)
    panel.train.start()
    panel.wait(600)
    assert "target reached" in text(panel.message), text(panel.message)
    assert panel.ws.info("toy")["n_layer"] == 3 and panel.train.layers.min == 3
    assert "this model has 3 layers" in panel.train.layers_note.value                    # the hint follows the growth
    assert [m[1] for m in panel.train.plot.live["marks"]] == ["grew to 3 layers"]       # and the plot marks it
    panel.train.epochs.value = 2
    panel.train.start()
    panel.wait(600)
    assert [m[1] for m in panel.train.plot.live["marks"]] == ["grew to 3 layers", "resumed"]
    panel.refresh()                                                                        # read back from the history
    assert sorted(m[1] for m in panel.train.plot.live["marks"]) == ["grew to 3 layers", "resumed"]
    n = panel.train.plot.renders
    for axis in ("steps", "tokens", "minutes"):
        panel.train.x_axis.value = axis
    panel.train.log_y.value, panel.train.smoothing.value = True, 0.9
    view = panel.train.plot.view
    assert panel.train.plot.renders == n + 5
    assert (view.x_axis, view.log_y, view.smoothing) == ("minutes", True, 0.9)   # the browser redraws with them
    assert [m[1] for m in view.marks] == ["grew to 3 layers", "resumed"]
    ax = panel.train.plot.figure().axes[0]   # and the static figure agrees
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "minutes of training"
    assert "(smoothed 0.9)" in str(ax.get_legend_handles_labels()[1])


def test_not_enough_data_is_shown(panel):
    panel.data.upload([dict(name="tiny.txt", content=b"tiny")])
    panel.train.start()
    panel.wait(600)
    assert "more tokens" in text(panel.message) and text(panel.message).startswith("error:")
    assert not panel.train.start_btn.disabled and "starting" not in text(panel.train.status)


def test_state_belongs_to_the_selected_model(home):
    p = ControlPanel(home)
    assert p.tabs.selected_index == 0 and "create a first model" in text(p.message)   # a new workspace opens on Models
    assert p.train.plot.view.live == b"" and p.hist.chart.view.compare == []  # empty plots, no broken images
    for n in ("first", "second"):
        p.models.new_name.value, p.models.new_preset.value, p.models.new_layers.value = n, "nano", 2
        p.models.create()
    p.model.value = "first"
    p.train.start()  # refused: the queue is empty
    p.wait(600)
    msg = text(p.message)
    assert "is empty: add data in the Data tab" in msg and "cllm add" not in msg
    assert "not trained yet" in text(p.train.status)
    p.train.nproc.value = 2
    p.model.value = "second"
    assert text(p.message) == "" and "first" not in text(p.cli) and p.train.nproc.value == 1  # nothing of 'first' stays
    assert text(p.train.status).startswith("second has not trained yet")
    p.models.new_name.value = "first"
    p.models.create()
    assert "already exists" in text(p.message) and " new first " in text(p.cli)  # the shell line of the refused create
    p.gen.top_p.value = 0.95
    p.data.upload([dict(name="c.txt", content=CORPUS)])
    p.train.epochs.value, p.train.batch.value, p.train.seq.value = 0.0500006, 4, 32
    assert "--epochs 0.0500006" in text(p.cli) and "0.050000600000" not in text(p.cli)
    p.train.epochs.value = 50
    p.train.start()
    assert all(w.disabled for w in (p.train.lr, p.train.epochs, p.train.batch)) and "fixed" in p.train.locked_note.value
    assert p.gen.button.disabled and "waits for its training run" in p.gen.note.value
    deadline = time.time() + 120
    while "MFU" not in p.train.status.value and time.time() < deadline:
        time.sleep(0.05)
    assert "<abbr title='model FLOPs utilisation" in p.train.status.value
    p.train.stop()
    p.wait(600)
    assert not p.train.lr.disabled and p.gen.note.value == ""
    assert "in this epoch" in p.data.queue_table.value and ">training<" not in p.data.queue_table.value
    p.gen.max_tokens.value = 20
    p.gen.generate()
    p.wait(600)
    assert re.search(r"generated \d+ tokens in [\d.]+ s", p.gen.note.value) and "--top-p 0.95 " in text(p.cli) + " "
    p.models.ask_delete()
    assert p.models.delete_cancel.layout.display == ""
    p.models.cancel_delete()
    assert p.models.delete_confirm.layout.display == "none" and "second" in p.ws.names()


def test_generate_rename_compare_history_delete(panel):
    panel.data.upload([dict(name="c.txt", content=CORPUS)])
    panel.train.batch.value, panel.train.seq.value, panel.train.epochs.value = 4, 32, 1
    panel.train.start()
    panel.wait(600)
    panel.gen.prompt.value, panel.gen.max_tokens.value, panel.gen.temperature.value = "Line", 30, 0
    panel.gen.generate()
    panel.wait(600)
    assert panel.gen.output.value.startswith("Line") and len(panel.gen.output.value) > 4
    assert "generate toy --prompt Line" in text(panel.cli)
    panel.ws.copy("toy", "twin")
    panel.refresh()
    assert panel.train.compare.options == ("twin",)
    panel.train.compare.value = ("twin",)
    assert len(panel.train.plot.compare) == 1
    panel.hist.models.value = ("toy", "twin")
    panel.hist.plot()  # drawn in the browser, each model in its colour, its validation and marks with it
    runs = panel.hist.chart.view.compare
    assert [r["name"] for r in runs] == ["toy", "twin"] and runs[0]["val"] and "twin" in panel.hist.table.value
    assert [r["color"] for r in runs] == [panel.color_of("toy"), panel.color_of("twin")] == [PALETTE[0], PALETTE[1]]
    assert panel.train.plot.view.color == panel.color_of("toy")  # the same colour on the Train tab
    assert panel.hist.chart.view.unit == "bits" and abs(runs[0]["scale"] - 1 / math.log(2)) < 1e-3  # bytes
    panel.hist.unit.value = "nats"
    assert panel.hist.chart.view.compare[0]["scale"] == 1.0 and "train (nats/token)" in panel.hist.table.value
    panel.hist.eval_paths.value = str(panel.ws.path("toy") / "ingested" / "c.txt")
    panel.hist.evaluate()  # every chosen model, and the warning in the warning's colour
    assert "cllm-warn" in panel.message.value and "training data of toy, twin" in text(panel.message)
    assert panel.hist.eval_out.value.count("<pre>") == 2 and "includes training data" in panel.hist.table.value
    panel.models.rename_to.value = "renamed"
    panel.models.rename()
    assert set(panel.ws.names()) == {"renamed", "twin"} and panel.model.value == "renamed"
    panel.models.ask_delete()
    assert panel.models.delete_confirm.layout.display == "" and "renamed" in panel.models.delete_confirm.description
    assert set(panel.ws.names()) == {"renamed", "twin"}                              # nothing deleted before confirming
    panel.models.delete()
    assert panel.ws.names() == ["twin"] and panel.model.value == "twin"


def test_the_cell_run_again_during_a_run_gives_back_the_panel_with_its_run(panel):
    panel.data.upload([dict(name="c.txt", content=CORPUS * 5)])
    panel.train.batch.value, panel.train.seq.value, panel.train.epochs.value = 4, 32, 30
    panel.train.start()
    again = ControlPanel(panel.ws.home)  # what running the cell again makes
    assert again is panel and "already at work here (training toy)" in text(panel.message)
    panel.link._answer(None, {"ping": 7}, [])  # the browser's ping is answered
    assert panel.link.pings == 1
    deadline = time.time() + 120
    while len(panel.train.plot.live["y"]) < 2 and time.time() < deadline:
        time.sleep(0.05)
    panel.train.stop()
    panel.wait(600)
    fresh = ControlPanel(panel.ws.home)  # nothing going on: a new panel, which finds the model as the run left it
    assert fresh is not panel and fresh.model.value == "toy" and "steps" in text(fresh.train.status)


def test_a_run_whose_process_died_is_said_so(home, tmp_path):
    "A run that started and never ended (a killed process, a restarted kernel): the Train tab says where it goes on."
    import signal
    import subprocess
    from conftest import BIN, cllm_env
    ws = Workspace(home)
    ws.create("k", preset_name="nano")
    ws.queue("k").add_text(CORPUS.decode() * 5, source="c")
    p = subprocess.Popen([str(BIN / "cllm"), "train", "k", "--epochs", "1000", "--batch-size", "4", "--seq-len", "32",
                          "--save-every", "2"], env=cllm_env(home), stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and ws.read_state("k")["steps"] < 4:
        time.sleep(0.1)
    p.send_signal(signal.SIGKILL)
    p.wait()
    status = text(ControlPanel(home).train.status)
    assert "last run ended without finishing" in status, status
    assert f"from the last checkpoint, at step {ws.read_state('k')['steps']:,}" in status
