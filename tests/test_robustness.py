"Nothing lost, nothing leaked: bad sources, links, names, damaged models, torn files, races, early stops."
import json, os, threading, time
from pathlib import Path
import numpy as np
import pytest
from crystalline_nb.workspace import Workspace, check_name
from crystalline_nb.queue import Queue
from crystalline_nb.tokenizer import ByteTokenizer, BPETokenizer
from crystalline_nb.trainer import Trainer
from crystalline_nb.history import history
from crystalline_nb.cli import main

GOOD = "The clock lattice has rings of twelve and sixty positions. " * 20


@pytest.fixture
def ws(tmp_path):
    w = Workspace(tmp_path / "home")
    w.create("m", preset_name="nano", max_seq_len=64)
    return w


def test_one_bad_source_never_takes_the_others_down(ws, tmp_path):
    d = tmp_path / "drop"
    d.mkdir()
    (d / "a.txt").write_text(GOOD)
    (d / "deep.json").write_text("[" * 200_000)  # RecursionError in the JSON parser
    (d / "lone.jsonl").write_text('{"text": "lone \\ud800 surrogate and more words"}\n')
    (d / "z.txt").write_text(GOOD + " the last one")
    rep = ws.queue("m").add_paths([d])
    assert sorted(Path(r["source"]).name for r in rep.added) == ["a.txt", "lone.jsonl", "z.txt"]
    assert [(Path(s).name, "RecursionError" in why) for s, why in rep.rejected] == [("deep.json", True)]
    assert len(ws.queue("m").rows()) == 3


def test_inbox_moves_a_bad_file_out_instead_of_failing_forever(ws):
    inbox = ws.path("m") / "inbox"
    (inbox / "deep.json").write_text("[" * 200_000)
    (inbox / "good.md").write_text(GOOD)
    time.sleep(0.05)
    rep = ws.queue("m").ingest_inbox()
    assert len(rep.added) == 1 and len(rep.rejected) == 1
    assert not list(inbox.iterdir()) and (ws.path("m") / "rejected" / "deep.json").exists()
    assert ws.queue("m").ingest_inbox().summary().startswith("added 0 sources")


def test_links_out_of_a_dropped_folder_are_not_followed(ws, tmp_path):
    secret = tmp_path / "id_rsa"
    secret.write_text("-----BEGIN PRIVATE KEY----- very secret material " * 10)
    d = tmp_path / "drop"
    (d / "sub").mkdir(parents=True)
    (d / "notes").symlink_to(secret)
    (d / "sub" / "inside.txt").write_text(GOOD)
    (d / "alias.txt").symlink_to(d / "sub" / "inside.txt")  # a link that stays inside: fine (same content)
    (d / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    rep = ws.queue("m").add_paths([d])
    reasons = {Path(s).name: why for s, why in rep.rejected}
    assert "notes" in reasons and "leading out" in reasons["notes"]
    assert "elsewhere" in reasons and "folder" in reasons["elsewhere"]
    tokens = ws.queue("m").corpus().read(0, len(ws.queue("m").corpus()))
    assert b"PRIVATE" not in bytes(int(t) - 3 for t in tokens if 3 <= t < 259)
    inbox = ws.path("m") / "inbox"
    (inbox / "key").symlink_to(secret)
    (inbox / "dir").symlink_to(tmp_path, target_is_directory=True)
    rep = ws.queue("m").ingest_inbox()
    assert not rep.added and len(rep.rejected) == 2 and not list(inbox.iterdir())
    assert (ws.path("m") / "rejected" / "dir").is_symlink()
    ws.copy("m", "m2")
    assert (ws.path("m2") / "rejected" / "key").is_symlink()  # copied as a link, not as the key


def test_names_must_start_with_a_letter_or_digit(tmp_path):
    for bad in ("-m", "_x", ".x"):
        with pytest.raises(ValueError, match="starting with a letter or a digit"):
            check_name(bad)
    assert main(["--home", str(tmp_path), "new", "--", "-m"]) == 1


def test_damaged_models_are_listed_not_fatal(ws, capsys):
    ws.create("ok", preset_name="nano")
    (ws.path("m") / "state.json").write_text("{ not json")
    (ws.models_dir / "-odd").mkdir()
    rows = {r["name"]: r for r in ws.list()}
    assert "damaged" in rows["m"] and "damaged" in rows["-odd"] and "damaged" not in rows["ok"]
    assert main(["--home", str(ws.home), "ls"]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "m " in out and "damaged: cannot read" in out and "-odd" in out
    from crystalline_nb.panel import ControlPanel
    p = ControlPanel(ws.home)
    assert list(p.model.options) == ["ok"] and "damaged" in p.models.table.value


def test_torn_manifest_line_then_append_stays_readable(ws):
    q = ws.queue("m")
    q.add_text(GOOD, source="one")
    with open(q.manifest, "ab") as f:
        f.write(b'{"source": "torn", "ki')  # power cut in the middle of an append
    q.add_text(GOOD + " two", source="two")
    assert [r["source"] for r in q.rows()] == ["one", "two"]
    assert [r["id"] for r in q.rows()] == [0, 1]
    assert ws.info("m")["queue"]["sources"] == 2


def test_rename_and_delete_wait_for_no_writer_and_a_writer_never_revives_a_model(ws):
    q = ws.queue("m")
    started, release = threading.Event(), threading.Event()

    def slow_pieces():
        started.set()
        release.wait(10)
        yield GOOD

    t = threading.Thread(target=q.add, args=([("slow", "text", slow_pieces)],))
    t.start()
    started.wait(10)
    with pytest.raises(ValueError, match="receiving data"):
        ws.rename("m", "n")
    with pytest.raises(ValueError, match="receiving data"):
        ws.delete("m")
    release.set()
    t.join(10)
    assert len(q.rows()) == 1
    ws.rename("m", "n")
    with pytest.raises(ValueError, match="renamed or deleted"):
        q.add_text(GOOD + " late", source="late")
    assert not ws.path("m").exists() and ws.names() == ["n"]
    ws.create("m", preset_name="nano")  # the old name is free again


def test_bpe_never_turns_text_into_special_ids():
    tok = BPETokenizer.train(["docs about <eos> and <pad> tokens"] * 30, vocab_size=300)
    text = "a literal <eos> and <pad> and <bos> in a document"
    ids = tok.encode(text)
    assert not {tok.pad_id, tok.bos_id, tok.eos_id} & set(ids)
    assert tok.decode(ids) == text


def _losses(ws, name):
    return history(ws, name).loss.values


def test_exact_resume_with_dropout(tmp_path):
    "Dropout draws from torch's RNG: a resumed run must still match an uninterrupted one."
    text = "".join(f"Line {i}: twelve hours, sixty minutes, sixty seconds.\n" for i in range(150))
    for name in ("a", "b"):
        w = Workspace(tmp_path / name)
        w.create(name, preset_name="nano", max_seq_len=64, dropout=0.1)
        w.queue(name).add_text(text, source="t")
    wa, wb = Workspace(tmp_path / "a"), Workspace(tmp_path / "b")
    Trainer(wa, "a", batch_size=4, seq_len=32, lr=3e-3, target_epochs=2, save_every=1000).run(max_steps=16)
    Trainer(wb, "b", batch_size=4, seq_len=32, lr=3e-3, target_epochs=2, save_every=1000).run(max_steps=8)
    import crystalline_nb.trainer as tm
    tm._PEAK.clear()  # a new process measures its peak again: that must not disturb the RNG
    Trainer(wb, "b", save_every=1000).run(max_steps=8)
    assert np.array_equal(_losses(wa, "a"), _losses(wb, "b"))


def test_stop_asked_before_the_run_starts_is_honoured(ws):
    ws.queue("m").add_text(GOOD * 5, source="t")
    tr = Trainer(ws, "m", batch_size=2, seq_len=32)
    tr.stop()
    s = tr.run()
    assert s["reason"] == "stop" and s["steps"] == 0
    assert tr.run(max_steps=2)["steps"] == 2  # that stop does not carry over to the next run


def test_epoch_end_is_written_once_across_a_crash(ws, monkeypatch):
    "Killed after an epoch ends but before the checkpoint of that step: the resumed run writes the epoch once."
    ws.queue("m").add_text(GOOD, source="t")  # 1,201 tokens: the first epoch ends inside the 10th batch of 128
    real, crashed = Trainer._checkpoint, []

    def dying(self):
        if self._epoch_ended and not crashed:
            crashed.append(self.lm.state["steps"])
            raise RuntimeError("power cut")
        real(self)

    monkeypatch.setattr(Trainer, "_checkpoint", dying)
    with pytest.raises(RuntimeError, match="power cut"):
        Trainer(ws, "m", batch_size=4, seq_len=32, target_epochs=3, save_every=1).run()
    monkeypatch.setattr(Trainer, "_checkpoint", real)
    Trainer(ws, "m", save_every=1).run()
    ds = history(ws, "m")
    assert list(ds.epoch.values) == [1, 2, 3], list(ds.epoch.values)
    assert np.isfinite(ds.train_loss.values).all() and crashed == [10]
    assert [e["epoch"] for e in json.loads(ds.attrs["events"]) if e["type"] == "epoch"] == [1, 2, 3]
