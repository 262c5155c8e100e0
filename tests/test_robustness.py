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
    started.wait(600)
    with pytest.raises(ValueError, match="receiving data"):
        ws.rename("m", "n")
    with pytest.raises(ValueError, match="receiving data"):
        ws.delete("m")
    release.set()
    t.join(600)
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
    import crystalline_nb.device as dm
    dm._PEAK.clear()  # a new process measures its peak again: that must not disturb the RNG
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


def _record_training(monkeypatch):
    "Record, per optimizer step, the corpus positions of its windows (-1 for padding) and every validation window."
    import crystalline_nb.epochs as qm
    steps, val, calls = [], [], []
    real_runs, real_collect, real_validate = qm.EpochPlan.runs, Trainer._collect, Trainer.validate

    def runs(plan, offset, n):
        out = real_runs(plan, offset, n)
        calls.append(out)
        return out

    def collect(self, need):
        calls.clear()
        got = real_collect(self, need)
        if got is not None:  # padded positions are those whose target the loss ignores
            pos = np.full(len(got[1]), -1)
            pos[got[1] != -100] = np.concatenate([np.arange(s, s + k) for run in calls for s, k in run])
            steps.append(pos)
        return got

    def validate(self, max_blocks=32):
        if self.plan is not None:
            val.extend(s + j for s in self.plan.val_windows() for j in range(self.plan.val_block))
        return real_validate(self, max_blocks)

    monkeypatch.setattr(qm.EpochPlan, "runs", runs)
    monkeypatch.setattr(Trainer, "_collect", collect)
    monkeypatch.setattr(Trainer, "validate", validate)
    return steps, val


def test_no_validation_token_is_ever_trained_on(tmp_path, monkeypatch):
    "Across sequence-length changes, a growing corpus and growth, training never touches a held-out position."
    steps, val = _record_training(monkeypatch)
    w = Workspace(tmp_path)
    w.create("v", preset_name="nano", max_seq_len=64)
    text = "".join(f"Record {i}: twelve rings, sixty marks, a hundred steps.\n" for i in range(160))
    w.queue("v").add_text(text, source="a")
    Trainer(w, "v", batch_size=4, seq_len=32, target_epochs=1).run()
    w.queue("v").add_text(text.replace("Record", "Entry"), source="b")
    Trainer(w, "v", batch_size=3, seq_len=48, target_epochs=2, layers=3).run()
    Trainer(w, "v", batch_size=8, seq_len=16, target_epochs=3).run()
    trained = set(np.concatenate(steps).tolist()) - {-1}
    assert len(val) > 0 and len(trained) > 10_000
    assert not trained & set(val)
    assert w.read_state("v")["holdout"] == 0


def test_windows_stay_aligned_across_epoch_ends(tmp_path, monkeypatch):
    "A batch that crosses an epoch end restarts on a window boundary: no window mixes two blocks."
    steps, _ = _record_training(monkeypatch)
    w = Workspace(tmp_path)
    w.create("a", preset_name="nano", max_seq_len=64)
    w.queue("a").add_text("Short lines of a corpus whose length is no multiple of anything. " * 25, source="s")
    Trainer(w, "a", batch_size=4, seq_len=32, target_epochs=4, lr=1e-3).run()
    assert any((s == -1).any() for s in steps)  # some batch did cross an epoch end
    for pos in steps:
        pos = np.concatenate([pos, np.full(-len(pos) % 32, -1)])  # the run's last window is padded later
        for win in pos.reshape(-1, 32):
            real = win[win >= 0]
            assert (win[: len(real)] >= 0).all()  # padding only at the end of a window
            assert (np.diff(real) == 1).all(), win  # one contiguous run of the corpus per window


from hypothesis import given, settings, HealthCheck, strategies as st

EXTS = [".txt", ".md", ".py", ".json", ".jsonl", ".html", ".pdf", ".ipynb", ".bin", ""]
CONTENT = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.text(max_size=100).map(lambda t: t.encode("utf-16")),
    st.text(alphabet="abc é\n{}[]\":", max_size=200).map(str.encode),
    st.just(b'{"text": "a json document"}'), st.just(b"[" * 5000),
)
ENTRY = st.tuples(st.lists(st.sampled_from(["a", "b", "sub", "x y"]), max_size=3),  # folders
                  st.text(alphabet="abcdef-_", min_size=1, max_size=6), st.sampled_from(EXTS),
                  st.sampled_from(["file", "file", "file", "link-in", "link-out", "link-dir"]), CONTENT)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ENTRY, min_size=1, max_size=12))
def test_random_trees_each_file_accounted_once(tmp_path_factory, entries):
    "Any tree of files: no error escapes, every file is added, a duplicate or refused exactly once, nothing leaks."
    base = tmp_path_factory.mktemp("tree").resolve()
    root, outside = base / "drop", base / "private"
    root.mkdir()
    outside.mkdir()
    (outside / "key").write_text("TOPSECRET " * 20)
    made = set()
    for folders, stem, ext, kind, data in entries:
        d = root.joinpath(*folders)
        try:
            d.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):  # a file already took that folder's name
            continue
        if not d.resolve().is_relative_to(root):  # a link to the folder outside took that folder's name
            continue
        p = d / (stem + ext)
        if p.exists() or p.is_symlink() or p in made:
            continue
        if kind == "file" or not made:
            p.write_bytes(data)
        elif kind == "link-in":
            p.symlink_to(sorted(made)[0])
        elif kind == "link-out":
            p.symlink_to(outside / "key")
        else:
            p.symlink_to(outside, target_is_directory=True)
        made.add(p)
    w = Workspace(base / "home")
    w.create("t", preset_name="nano")
    rep = w.queue("t").add_paths([root])
    reported = ([r["source"] for r in rep.added] + [s for s, _ in rep.duplicates] + [s for s, _ in rep.rejected])
    rel = sorted(str(Path(s).relative_to(root)) if Path(s).is_absolute() else s for s in reported)
    assert rel == sorted(str(p.relative_to(root)) for p in made)
    assert all("\n" not in why and why for _, why in rep.rejected)
    c = w.queue("t").corpus()
    assert "TOPSECRET" not in w.load("t").tokenizer.decode(c.read(0, len(c)).tolist())


def test_growth_event_written_once_across_a_crash(ws, monkeypatch):
    "Killed after growing but before the growth's checkpoint: the resumed run grows again and logs it once."
    ws.queue("m").add_text(GOOD, source="t")
    Trainer(ws, "m", batch_size=4, seq_len=32, target_epochs=1).run(max_steps=3)
    real = Trainer._checkpoint

    def dying(self):
        if self.lm.model.cfg.n_layer == 3:
            raise RuntimeError("power cut")
        real(self)

    monkeypatch.setattr(Trainer, "_checkpoint", dying)
    with pytest.raises(RuntimeError, match="power cut"):
        Trainer(ws, "m", layers=3).run(max_steps=2)
    monkeypatch.setattr(Trainer, "_checkpoint", real)
    assert ws.info("m")["n_layer"] == 2  # the growth never committed
    Trainer(ws, "m", layers=3).run(max_steps=2)
    grown = [e for e in json.loads(history(ws, "m").attrs["events"]) if e["type"] == "growth"]
    assert [(e["step"], e["to_layers"]) for e in grown] == [(3, 3)] and ws.info("m")["n_layer"] == 3
