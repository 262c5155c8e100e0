"""Per-model queues: every kind of input, bad input with one reason each, bounded memory, isolation, concurrency and
crashes."""

import json, os, signal, subprocess, sys, textwrap, time, tracemalloc
from pathlib import Path
import numpy as np
import pytest
from crystalline_nb.workspace import Workspace
from crystalline_nb.queue import Queue, ledger
from crystalline_nb.epochs import EpochPlan, gather, missing_tokens
from crystalline_nb.tokenizer import ByteTokenizer, BPETokenizer
from conftest import BIN, cllm_env


@pytest.fixture
def ws(home):
    w = Workspace(home)
    w.create("m", preset_name="nano")
    return w


def texts_of(q):
    "Decoded documents of the queue, per source."
    c, tok = q.corpus(), q.tokenizer
    return {
        r["source"]: tok.decode(c.read(int(c.starts[i]), int(c.starts[i + 1])).tolist()) for i, r in enumerate(c.rows)
    }


def test_every_supported_kind(ws, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams["pdf.fonttype"] = 42
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.txt").write_text("Plain text about clocks.\n")
    (d / "b.md").write_text("# Heading\n\nMarkdown *body*.\n")
    (d / "c.py").write_text("def f(x):\n    return x + 1\n")
    (d / "d.html").write_text(
        "<html><body><nav>Menu | Login</nav><main><p>"
        + "Main article text about crystal lattices. " * 6
        + "</p></main></body></html>"
    )
    (d / "e.json").write_text(json.dumps([{"text": "first json doc"}, {"text": "second json doc"}]))
    (d / "f.jsonl").write_text('{"text": "line one"}\n{"content": "line two"}\n')
    (d / "README").write_text("no suffix is read as text\n")
    fig = plt.figure()
    fig.text(0.1, 0.5, "A PDF sentence about the clock.")
    fig.savefig(d / "g.pdf")
    plt.close(fig)
    rep = ws.queue("m").add_paths([d])
    assert not rep.rejected, rep.rejected
    got = {Path(k).name: v for k, v in texts_of(ws.queue("m")).items()}
    assert got["a.txt"] == "Plain text about clocks."
    assert got["c.py"] == "def f(x):\n    return x + 1"          # indentation kept
    assert "Main article text" in got["d.html"] and "Menu" not in got["d.html"]
    assert got["e.json"] == "first json docsecond json doc"         # decode drops the EOS between documents
    assert got["f.jsonl"] == "line oneline two"
    assert "PDF sentence" in got["g.pdf"]
    c = ws.queue("m").corpus()
    eos = np.flatnonzero(c.read(0, len(c)) == 2)
    assert len(eos) == 8 + 2                                          # one per document (json and jsonl hold two each)


def test_bad_inputs_each_one_reason(ws, tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "nul.txt").write_bytes(b"abc\x00def")
    (d / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (d / "empty.txt").write_bytes(b"")
    (d / "blank.txt").write_text("  \n\t\n")
    (d / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (d / "broken.json").write_text("{oops")
    (d / "notext.html").write_text("<html><body><script>var x=1;</script></body></html>")
    os.symlink(d / "loop", d / "loop")
    os.symlink(d / "nowhere", d / "dangling.txt")
    (d / "good.txt").write_text("the only good file\n")
    q = ws.queue("m")
    rep = q.add_paths([d, tmp_path / "missing"])
    reasons = {Path(s).name: r for s, r in rep.rejected}
    assert [Path(r["source"]).name for r in rep.added] == ["good.txt"]
    assert "NUL byte at offset 3" in reasons["nul.txt"]
    assert "not valid UTF-8 (byte 0xe9 at offset 3)" in reasons["latin1.txt"]
    assert reasons["empty.txt"] == "empty file"
    assert reasons["blank.txt"] == "no text left after cleaning"
    assert "unsupported file type '.png'" in reasons["img.png"]
    assert "not valid JSON" in reasons["broken.json"]
    assert "no main text" in reasons["notext.html"]
    assert reasons["loop"] == "symlink loop"
    assert reasons["dangling.txt"] == "broken symlink"
    assert reasons["missing"] == "no such file or directory"
    assert len(rep.rejected) == 10                                   # each bad input reported exactly once
    assert len(q.rejected()) == 10
    assert [Path(r["source"]).name for r in q.rows()] == ["good.txt"]   # nothing else changed


def test_unreadable_file(ws, tmp_path, monkeypatch):
    f = tmp_path / "secret.txt"
    f.write_text("x")
    import builtins
    real_open = builtins.open
    def deny(p, *a, **k):
        if str(p) == str(f):
            raise PermissionError(13, "Permission denied")
        return real_open(p, *a, **k)
    monkeypatch.setattr(builtins, "open", deny)
    rep = ws.queue("m").add_paths([f])
    assert rep.rejected == [(str(f), "permission denied")]


def test_dedup_isolation_rename_delete(ws, tmp_path):
    ws.create("other", preset_name="nano")
    f = tmp_path / "a.txt"
    f.write_text("shared text\n")
    g = tmp_path / "b.txt"  # same after cleaning (line end, trailing blanks)
    g.write_text("shared text  \r\n")
    assert len(ws.queue("m").add_paths([f]).added) == 1
    rep = ws.queue("m").add_paths([g])
    assert not rep.added and rep.duplicates == [(str(g), str(f))]
    assert ws.queue("other").rows() == []                               # queues never mix
    assert len(ws.queue("other").add_paths([f]).added) == 1             # dedup is per model
    ws.rename("m", "m2")
    assert len(ws.queue("m2").rows()) == 1 and ws.queue("m2").corpus().read(0, 6).tolist() == ByteTokenizer().encode(
        "shared"
    )
    ws.delete("m2")
    assert not (ws.models_dir / "m2").exists() and len(ws.queue("other").rows()) == 1


def test_inbox(ws):
    inbox = ws.path("m") / "inbox"
    (inbox / "sub").mkdir(parents=True)
    (inbox / "one.txt").write_text("first dropped file\n")
    (inbox / "sub" / "two.md").write_text("second dropped file\n")
    (inbox / "bad.bin").write_bytes(b"\x00")
    rep = ws.queue("m").ingest_inbox()
    assert sorted(r["source"] for r in rep.added) == ["inbox/one.txt", "inbox/sub/two.md"]
    assert list(inbox.iterdir()) == []
    assert (ws.path("m") / "ingested" / "sub" / "two.md").exists() and (ws.path("m") / "rejected" / "bad.bin").exists()
    rep2 = ws.queue("m").ingest_inbox()
    assert not rep2.added and not rep2.rejected


def test_many_small_files_fast_with_progress(ws, tmp_path):
    d = tmp_path / "many"
    d.mkdir()
    for i in range(3000):
        (d / f"f{i:05d}.txt").write_text(f"small file number {i}\n")
    calls = []
    rep = ws.queue("m").add_paths([d], progress=lambda **k: calls.append(k))
    assert len(rep.added) == 3000 and not rep.rejected
    assert calls[-1]["done"] == 3000 and calls[-1]["total"] == 3000
    assert len(list((ws.path("m") / "queue" / "shards").glob("*.bin"))) == 1      # one shard, one manifest append


@pytest.mark.parametrize("one_line", [False, True], ids=["many-lines", "one-enormous-line"])
def test_large_file_bounded_memory(ws, tmp_path, one_line):
    f = tmp_path / "big.txt"
    line = "the clock ticks and the lattice hums " * 3
    with open(f, "w") as fh:
        for _ in range(300_000):
            fh.write(line + (" " if one_line else "\n"))
    size = f.stat().st_size
    assert size > 30_000_000
    tracemalloc.start()
    rep = ws.queue("m").add_paths([f])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(rep.added) == 1 and rep.added[0]["tokens"] > size * 0.9
    assert peak < 32 * 2**20, f"peak {peak / 2**20:.1f} MiB while ingesting {size / 2**20:.0f} MiB"


def test_import_between_tokenizers(home, tmp_path):
    ws = Workspace(home)
    ws.create("src", preset_name="nano")
    ws.create(
        "dst", preset_name="nano", tokenizer="bpe", texts=["the crystal clock ticks twelve times"] * 30, vocab_size=300
    )
    (tmp_path / "a.jsonl").write_text('{"text": "doc one"}\n{"text": "doc two ünïcode"}\n')
    ws.queue("src").add_paths([tmp_path / "a.jsonl"])
    rep = ws.queue("dst").import_from(ws.queue("src"), "src")
    assert len(rep.added) == 1 and rep.added[0]["source"].startswith("src:")
    assert list(texts_of(ws.queue("dst")).values()) == ["doc onedoc two ünïcode"]
    assert not ws.queue("dst").import_from(ws.queue("src"), "src").added      # second import: duplicates only


def test_epoch_plan_and_accumulation(ws):
    q = ws.queue("m")
    for i in range(10):
        q.add_text(f"tiny input {i}.", source=f"t{i}")   # small inputs accumulate
    n = len(q.corpus())
    assert missing_tokens(n - 1, 8, 32) == 8 * 32 - (n - 1) > 0          # not yet a full batch of 8x32
    for i in range(40):
        q.add_text(f"more tiny input number {i}.", source=f"u{i}")
    c = q.corpus()
    plan = EpochPlan(len(c), 32, seed=0, epoch=0)
    assert missing_tokens(plan.n_train, 8, 32) == 0
    x, y = gather(c, plan.runs(0, 8 * 32))
    assert x.shape == y.shape == (256,)
    full = c.read(0, len(c))
    for s, k in plan.runs(0, 8 * 32):                                       # targets are the true next tokens
        assert np.array_equal(full[s + 1:s + k + 1], gather(c, [(s, k)])[1])


def test_concurrent_ingest_while_reading(ws, tmp_path):
    "A writer process adds sources while this process reads the queue: no half-written shard is ever visible."
    script = textwrap.dedent(f"""
        from crystalline_nb.workspace import Workspace
        q = Workspace({str(ws.home)!r}).queue("m")
        for i in range(150): q.add_text(("document %d " % i) * (1 + i % 50), source="doc%d" % i)
    """)
    p = subprocess.Popen([sys.executable, "-c", script])
    q = Queue(ws.path("m"))
    seen = 0
    while p.poll() is None or seen < 150:
        rows = q.rows()
        c = q.corpus()
        data = c.read(0, len(c))
        for i, r in enumerate(rows):
            seg = data[int(c.starts[i]):int(c.starts[i + 1])]
            assert len(seg) == r["tokens"] and seg[-1] == 2 and (seg[:-1] != 2).all()
        seen = len(rows)
        if p.poll() is not None and seen < 150:
            break
    assert p.wait() == 0 and len(q.rows()) == 150


def test_killed_ingest_leaves_consistent_queue(ws, tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("some words to ingest again and again\n" * 400_000)
    ws.queue("m").add_text("kept before the crash", source="before")
    for delay in (0.3, 0.8, 1.5):
        p = subprocess.Popen(
            [str(BIN / "cllm"), "add", "m", str(big)],
            env=cllm_env(ws.home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        q = ws.queue("m")
        rows = q.rows()
        assert rows[0]["source"] == "before" and len(rows) <= 2
        c = q.corpus()
        assert c.read(0, len(c))[-1] == 2                                   # every visible source is whole
        if len(rows) == 2:
            break
    rep = ws.queue("m").add_paths([big])                                    # the queue still works afterwards
    assert len(rep.added) + len(rep.duplicates) == 1


def test_cli_queue_and_show(ws, tmp_path, capsys):
    "`cllm queue` and `cllm show` in every form (about 10 s: several adds and listings)."
    from crystalline_nb.cli import main
    (tmp_path / "a.txt").write_text("a small file\n")
    r = subprocess.run(
        [str(BIN / "cllm"), "add", "m", str(tmp_path / "a.txt")], env=cllm_env(ws.home), capture_output=True, text=True
    )
    assert r.returncode == 0 and "added 1 source" in r.stdout
    r = subprocess.run(
        [str(BIN / "cllm"), "queue", "m", "--json"], env=cllm_env(ws.home), capture_output=True, text=True
    )
    data = json.loads(r.stdout)
    assert data["summary"]["sources"] == 1 and data["sources"][0]["status"] == "pending"
    r = subprocess.run(
        [str(BIN / "cllm"), "show", "m", "--json"], env=cllm_env(ws.home), capture_output=True, text=True
    )
    assert json.loads(r.stdout)["queue"]["tokens"] == len("a small file") + 1
    assert main(["--home", str(ws.home), "queue", "m", "--rejected"]) == 0                 # in-process: the same entry
    assert capsys.readouterr().out.strip() == "m: nothing was refused"
    r = subprocess.run(
        [str(BIN / "cllm"), "add", "m", str(tmp_path / "nope.txt")],
        env=cllm_env(ws.home),
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and r.stderr.strip() == f"error: {tmp_path / 'nope.txt'}: no such file or directory"
    r = subprocess.run(
        [str(BIN / "cllm"), "import-queue", "m", "--from", "m"], env=cllm_env(ws.home), capture_output=True, text=True
    )
    assert r.returncode == 1 and r.stderr.startswith("error:")
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "b.png").write_bytes(b"\x89PNG\x00")
    for _ in range(2):                                                       # refused twice, listed once
        main(["--home", str(ws.home), "add", "m", str(tmp_path / "pics")])
    capsys.readouterr()
    assert main(["--home", str(ws.home), "queue", "m", "--rejected"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].endswith("nope.txt: no such file or directory")
    assert f"{tmp_path / 'pics' / 'b.png'}: unsupported file type '.png'" in lines[1]


def test_ledger_epochs():
    rows = [dict(id=i, source=f"s{i}", kind="file", tokens=10, added="t") for i in range(4)]
    led = ledger(rows, epoch_rows=[2, 3], current_rows=3, current_frac=0.25)
    assert [r["epochs"] for r in led] == [2.25, 2.25, 1.25, 0.0]
    assert [r["status"] for r in led] == ["training", "training", "training", "pending"]


def test_readding_a_folder_reads_only_what_changed_and_logs_refusals_once(ws, tmp_path, monkeypatch):
    import crystalline_nb.readahead as qm  # FilePieces reads the files through it
    d = tmp_path / "big"
    d.mkdir()
    for i in range(30):
        (d / f"n{i:02}.txt").write_text(f"note {i}: the clock ticks {i} times.\n")
    (d / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    q = ws.queue("m")
    r1 = q.add_paths([d])
    assert len(r1.added) == 30 and len(r1.rejected) == 1
    reads = []
    real = qm.extract
    monkeypatch.setattr(qm, "extract", lambda f, *a: (reads.append(f), real(f, *a))[1])
    (d / "n05.txt").write_text("note 5, rewritten: the clock now ticks backwards.\n")
    r2 = q.add_paths([d])
    assert [Path(f).name for f in reads] == ["n05.txt"]  # unchanged files are not read again, refused or not
    assert len(r2.added) == 1 and len(r2.duplicates) == 29
    q.add_paths([d])
    assert len(q.rejected()) == 1 and ws.queue_summary("m")["rejected"] == 1   # the same refusal is logged once
    assert [r["id"] for r in q.rows()] == list(range(31))
    (d / "tiny.txt").write_text("hi\n")
    assert "too short" in q.add_paths([d], min_chars=5).rejected[-1][1]
    assert any(
        r["source"].endswith("tiny.txt") for r in q.add_paths([d], min_chars=1).added
    )  # a setting changed: read again


def test_ctrl_c_keeps_the_sources_read_whole(ws):
    q = ws.queue("m")
    def src(i):
        def pieces():
            if i == 6:
                raise KeyboardInterrupt
            yield f"source {i} says the lattice has {i} rings.\n"
        return (f"s{i}", "text", pieces)
    rep = q.add(src(i) for i in range(10))
    assert rep.interrupted and "interrupted" in rep.summary()
    assert [r["source"] for r in q.rows()] == [f"s{i}" for i in range(6)]
    assert len(q.corpus()) == sum(r["tokens"] for r in q.rows())              # no torn tokens of s6
    rep = q.add(src(i) for i in range(7, 10))
    assert not rep.interrupted and len(q.rows()) == 9


def test_two_open_ingestions_never_store_a_text_twice(ws):
    q = ws.queue("m")
    with q.ingestion() as a, q.ingestion() as b:  # each holds the writer lock, shared
        assert a.add("a1", "text", lambda: iter(["shared text about clocks"]))[0] == "added"
        assert a.add("a2", "text", lambda: iter(["only in a"]))[0] == "added"
        assert b.add("b1", "text", lambda: iter(["shared text about clocks"]))[0] == "added"
        b.flush()
        kept, dups = a.flush()
        assert [r["source"] for r in kept] == ["a2"] and dups == [("a1", "b1")]
        assert a.add("a3", "text", lambda: iter(["only in b? no, in a again"]))[0] == "added"
        assert a.add("a4", "text", lambda: iter(["shared text about clocks"])) == ("duplicate", "b1")
        a.flush()
    assert [(r["id"], r["source"]) for r in q.rows()] == [(0, "b1"), (1, "a2"), (2, "a3")]


def test_near_duplicates_are_reported_with_a_switch(ws, home):
    para = (
        lambda c, i: f"Chapter {c}, paragraph {i}: the lattice turns its rings at {c * 10 + i} different speeds today."
    )
    chapters = {f"ch{c}": "\n\n".join(para(c, i) for i in range(5)) for c in range(1, 4)}
    whole = (
        "# The book\n\n"
        + "\n\n".join(chapters.values())
        + "\n\nA closing note that appears nowhere else at all, truly."
    )
    q = ws.queue("m")
    for name, text in chapters.items():
        q.add_text(text, source=name)
    rep = q.add_text(whole, source="print")
    assert (
        not rep.added
        and rep.duplicates[0][0] == "print"
        and rep.duplicates[0][1].startswith("a near-duplicate of ch1 and 2 other sources (9")
    )
    mixed = "\n\n".join(
        [para(1, 0), para(1, 1)] + [f"A new paragraph number {i} with enough words to count as one." for i in range(4)]
    )
    assert q.add_text(mixed, source="mixed").added                                   # 2 of 6 paragraphs seen: kept
    assert q.add_text(whole, source="print", near_duplicates=False).added            # the switch
    ws.create("rev", preset_name="nano")
    r = ws.queue("rev")
    r.add_text(whole, source="print")
    reps = [r.add_text(t, source=n) for n, t in chapters.items()]
    assert all(not x.added and "a near-duplicate of print (100%" in x.duplicates[0][1] for x in reps)
    with r.ingestion() as ing:                                        # a later ingestion reads them from disk
        assert (
            ing.add("again", "text", lambda: iter([chapters["ch2"] + "\n\nplus one more short line."]))[0]
            == "duplicate"
        )



def test_a_near_duplicate_file_is_listed_as_refused_and_the_switch_still_adds_it(ws, tmp_path):
    paras = [f"Paragraph {i}: the rings of the lattice turn at speeds that this sentence names." for i in range(6)]
    a, b = str(tmp_path / "a.txt"), str(tmp_path / "b.txt")
    (tmp_path / "a.txt").write_text("\n\n".join(paras))
    (tmp_path / "b.txt").write_text("\n\n".join(paras) + "\n\nOne more line.")
    q = ws.queue("m")
    q.add_paths([tmp_path / "a.txt"])
    rep = q.add_paths([tmp_path / "b.txt"])
    assert not rep.added and rep.duplicates[0][1].startswith(f"a near-duplicate of {a} (")
    assert [(r["source"], r["reason"][:20]) for r in q.refused()] == [(b, "a near-duplicate of ")]
    assert q.add_paths([tmp_path / "b.txt"]).duplicates  # the same again: found again, not read as refused for good
    assert q.add_paths([tmp_path / "b.txt"], near_duplicates=False).added  # the switch adds the unchanged file
    assert len(q.rejected()) == 1  # logged once

def test_near_duplicates_within_one_ingestion_and_from_another_open_one(ws):
    para = lambda c, i: f"Part {c}, paragraph {i}: a sentence long enough to count as a paragraph of its own, {c}-{i}."
    part = lambda c, n=6: "\n\n".join(para(c, i) for i in range(n))
    q = ws.queue("m")
    with q.ingestion() as a, q.ingestion() as b:  # each holds the writer lock, shared
        assert a.add("a1", "text", lambda: iter([part(1)]))[0] == "added"
        got = a.add("a2", "text", lambda: iter([part(1) + "\n\nand one line more"]))  # the same run's paragraphs
        assert got[0] == "duplicate" and got[1].startswith("a near-duplicate of a1 (100%")
        for c in (2, 3):
            assert b.add(f"b{c}", "text", lambda c=c: iter([part(c)]))[0] == "added"
        b.flush()
        a.flush()  # reads what b wrote meanwhile
        got = a.add("a3", "text", lambda: iter([part(2) + "\n\n" + part(3)]))
        why = "a near-duplicate of b2 and 1 other sources (100% of its paragraphs are in the queue already)"
        assert got[0] == "duplicate" and got[1] == why
        assert a.add("a4", "text", lambda: iter([part(4)]))[0] == "added"
        a.flush()
    assert [r["source"] for r in q.rows()] == ["b2", "b3", "a1", "a4"]


# `cllm add` as its command line runs it, held in the middle of the big file: once more than 1 MB of it lies in the
# shard being written, the writer says so (a file) and waits there until the signal comes. Ctrl-C raises in it even
# when the suite itself was started in the background (a shell's background job inherits SIGINT ignored)
HELD = """
import signal, sys, time
from pathlib import Path
import crystalline_nb.queue as Q
from crystalline_nb.cli import main
signal.signal(signal.SIGINT, signal.default_int_handler)
marker, wrote = Path(sys.argv.pop(1)), Q._ShardWriter._wrote
def held(self, nbytes):
    wrote(self, nbytes)
    if self.f.tell() > 1 << 20 and not marker.exists():
        marker.touch()
        while True:
            time.sleep(0.05)
Q._ShardWriter._wrote = held
sys.argv[0] = "cllm"
sys.exit(main())
"""


def test_cli_ctrl_c_keeps_the_files_read_whole_and_a_rerun_goes_on(ws, tmp_path):
    d = tmp_path / "folder"
    d.mkdir()
    for i in range(20):
        (d / f"a{i:02}.txt").write_text(f"small file {i} about the clock lattice.\n")
    (d / "z_big.txt").write_text(("a long line of text about rings and clocks. " * 200 + "\n") * 4000)  # about 36 MB
    env, marker = cllm_env(ws.home), tmp_path / "in-the-big-file"
    p = subprocess.Popen([str(BIN / "python"), "-c", HELD, str(marker), "add", "m", str(d)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shards = ws.path("m") / "queue" / "shards"
    while not marker.exists() and p.poll() is None:  # an event: the big file is being added
        time.sleep(0.01)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "added 20 sources" in out and "interrupted" in out, (out, err)
    assert len(ws.queue("m").rows()) == 20 and not list(shards.glob(".tmp-*"))
    r = subprocess.run([str(BIN / "cllm"), "add", "m", str(d)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "added 1 source" in r.stdout and "20 already in the queue" in r.stdout


def test_short_bpe_sources_are_encoded_together_with_the_same_tokens(home, tmp_path, monkeypatch):
    import crystalline_nb.queue as Q
    from crystalline_nb.tokenizer import PARALLEL_MIN
    ws = Workspace(home)
    for name in ("batched", "one_by_one"):
        ws.create(name, preset_name="nano", tokenizer="bpe", texts=["the crystal clock ticks twelve times"] * 30,
                  vocab_size=300)
    tok = ws.queue("batched").tokenizer
    assert tok.tk.get_vocab() == ws.queue("one_by_one").tokenizer.tk.get_vocab()
    folder = tmp_path / "files"
    folder.mkdir()
    for i in range(12):
        (folder / f"f{i:02}.txt").write_text(f"file {i}: the clock at hour {i} rings {i * 7} times.\n" * (5 + i))
    sentence = "the lattice turns and the clock ticks on. "
    (folder / "f05.txt").write_text("a long one: " + sentence * (PARALLEL_MIN // 40))
    (folder / "f07.txt").write_text("longer: " + sentence * (Q.ENCODE_BATCH // 40))
    (folder / "g.jsonl").write_text('{"text": "first document"}\n{"text": ""}\n{"text": "third one ünï"}\n')
    calls = []
    real = type(tok).encode_many
    monkeypatch.setattr(type(tok), "encode_many", lambda self, texts: calls.append(len(texts)) or real(self, texts))
    monkeypatch.setattr(Q, "BATCH_CHARS", 2000)                                 # a batch every few files
    rep = ws.queue("batched").add_paths([folder])
    assert len(rep.added) == 13 and not rep.rejected, rep.summary()
    assert calls and max(calls) > 1                                           # several sources in one call
    monkeypatch.setattr(Q, "PARALLEL_MIN", 0)                                  # every source on its own
    ws.queue("one_by_one").add_paths([folder])

    def tokens(name):
        c = ws.queue(name).corpus()
        return [(r["source"], c.read(int(c.starts[i]), int(c.starts[i + 1])).tolist()) for i, r in enumerate(c.rows)]
    rows = ws.queue("batched").rows()
    assert [r["source"].rsplit("/", 1)[-1] for r in rows] == [f"f{i:02}.txt" for i in range(12)] + ["g.jsonl"]
    assert all(a["offset"] + a["tokens"] == b["offset"] for a, b in zip(rows, rows[1:]) if a["shard"] == b["shard"])
    assert tokens("batched") == tokens("one_by_one")                          # the same ids as one source at a time
    assert tokens("batched")[-1][1].count(tok.eos_id) == 2                     # two documents with text, two ends
    assert rows[-1]["documents"] == 2 and rows[-1]["empty_documents"] == 1      # the empty one: left out, counted


def _mixed_folder(d: Path) -> Path:
    "Text, code, HTML, JSONL (several documents), a bad file, an empty one, a copy and a near-copy."
    d.mkdir()
    para = "The crystal clock keeps time by the turning of its lattice, ring by ring, hour by hour. "
    (d / "a.txt").write_text("".join(f"{para} Part {i}.\n\n" for i in range(200)))
    (d / "b.py").write_text("def f(x):\n    return x + 1  \r\n\n\n\nclass C:\n\tpass\n" * 300)
    (d / "c.html").write_text("<html><body><main>" + f"<p>{para}</p>" * 40 + "</main></body></html>")
    (d / "d.jsonl").write_text("".join(json.dumps({"text": f"document {i}: {para}"}) + "\n" for i in range(50)))
    (d / "e.txt").write_bytes(b"caf\xc3\xa9 \xe2\x80\xa8 ok\n" * 5000 + b"bad \xff byte\n")
    (d / "f.txt").write_bytes(b"")
    (d / "g.txt").write_text((d / "a.txt").read_text())
    (d / "h.md").write_text("# Notes\n\n" + "".join(f"{para} Part {i}.\n\n" for i in range(190)))
    (d / "z.txt").write_text(("ünïcödé line with a trailing tab\t\n" * 40 + "\n") * 2000)
    return d


def test_reading_processes_store_the_same_as_reading_here(home, tmp_path, monkeypatch):
    import crystalline_nb.queue as Q
    import crystalline_nb.readahead as R
    d = _mixed_folder(tmp_path / "in")
    w = Workspace(home)
    results, started = {}, []
    real = R.Reader.__init__
    monkeypatch.setattr(R.Reader, "__init__", lambda self, paths, prepare=True, **k:
                        started.append((len(paths), prepare)) or real(self, paths, prepare, **k))
    # ahead: the 9 files dealt to two or more processes, which also hash and find paragraphs. big_ones: one process,
    # whose files the writing process hashes
    for name, prefetch, file_min, handed in (("here", 1 << 60, 0, 0), ("ahead", 0, 0, 9), ("big_ones", 0, 1 << 20, 1)):
        w.create(name, preset_name="nano")
        monkeypatch.setattr(R, "PREFETCH_MIN", prefetch)
        monkeypatch.setattr(R, "AHEAD_FILE_MIN", file_min)                     # big_ones: only z.txt (3 MB)
        started.clear()
        rep = w.queue(name).add_paths([d])
        assert sum(n for n, _ in started) == handed, (name, started)
        assert all(prep == (len(started) > 1) for _, prep in started), (name, started)
        q = w.queue(name)
        rows = [{k: r[k] for k in ("source", "hash", "chars", "bytes", "tokens")} for r in q.rows()]
        results[name] = (rows, texts_of(q), sorted(rep.rejected), sorted(rep.duplicates))
        para = (q.dir / "paragraphs.bin").read_bytes()
        results[name] += (para,)
        assert not list(q.shards.glob(".tmp-*"))                     # the files cleaned ahead were copied, then removed
    assert results["here"] == results["ahead"] == results["big_ones"]
    rows, texts, rejected, dups, _ = results["ahead"]
    assert [Path(r["source"]).name for r in rows] == ["a.txt", "b.py", "c.html", "d.jsonl", "z.txt"]
    assert [(Path(s).name, r.split(" (")[0]) for s, r in rejected] == [
        ("e.txt", "not valid UTF-8"),
        ("f.txt", "empty file"),
    ]
    assert [(Path(s).name, Path(o).name) for s, o in dups][0] == ("g.txt", "a.txt") and len(dups) == 2
    assert "h.md" in dups[1][0] and "near-duplicate" in dups[1][1]
    b = texts[str((d / "b.py").resolve())]
    assert "return x + 1\n\n\n\nclass C:\n\tpass" in b and "\r" not in b                 # kept as written, cleaned
    z = texts[str((d / "z.txt").resolve())]
    assert z.count("tab\n") == 79_999 and "\t" not in z                                  # trailing tabs gone


def _kill_reader(r):
    "Kill a reading process and drop what it sent but was not read yet, as if it had died there."
    r.proc.kill()
    r.proc.wait()
    while not r.inbox.empty():
        r.inbox.get()
    r.inbox.put(None)


def test_a_reading_process_lost_midway_leaves_the_rest_read_here(home, tmp_path, monkeypatch):
    import crystalline_nb.queue as Q
    import crystalline_nb.readahead as R
    d = _mixed_folder(tmp_path / "in")
    w = Workspace(home)
    w.create("here", preset_name="nano")
    w.queue("here").add_paths([d])
    w.create("lost", preset_name="nano")
    monkeypatch.setattr(R, "PREFETCH_MIN", 0)
    monkeypatch.setattr(R, "AHEAD_FILE_MIN", 0)
    monkeypatch.setattr(R, "READERS_MAX", 1)
    calls = []
    real = R.Reader.recv

    def recv(self):  # the reading process is killed after its fifth message
        calls.append(1)
        if len(calls) == 5:
            _kill_reader(self)
        return real(self)
    monkeypatch.setattr(R.Reader, "recv", recv)
    w.queue("lost").add_paths([d])
    assert len(calls) >= 5
    assert list(texts_of(w.queue("lost")).values()) == list(texts_of(w.queue("here")).values())


def _read_here_then_ahead(home, tmp_path, monkeypatch):
    "The mixed folder read into model 'here' by this process; from then on every file goes to reading processes."
    import crystalline_nb.readahead as R
    d = _mixed_folder(tmp_path / "in")
    w = Workspace(home)
    w.create("here", preset_name="nano")
    w.queue("here").add_paths([d])
    monkeypatch.setattr(R, "PREFETCH_MIN", 0)
    monkeypatch.setattr(R, "AHEAD_FILE_MIN", 0)
    return R, d, w


def test_no_reading_process_can_start_and_everything_is_read_here(home, tmp_path, monkeypatch):
    R, d, w = _read_here_then_ahead(home, tmp_path, monkeypatch)
    real, started = R.subprocess.Popen, []

    def popen(*a, **k):  # the first process starts, the second hits a limit
        if started:
            raise OSError(11, "Resource temporarily unavailable")
        started.append(real(*a, **k))
        return started[-1]
    monkeypatch.setattr(R.subprocess, "Popen", popen)
    w.create("limited", preset_name="nano")
    rep = w.queue("limited").add_paths([d])
    assert len(rep.added) == 5 and texts_of(w.queue("limited")) == texts_of(w.queue("here"))
    assert started and started[0].poll() is not None                                # the one started is stopped


def test_reading_processes_run_this_package_not_files_in_the_current_folder(home, tmp_path, monkeypatch):
    import crystalline_nb.queue as Q
    import crystalline_nb.readahead as R
    d = _mixed_folder(tmp_path / "in")
    other = tmp_path / "cwd" / "crystalline_nb"  # another copy where the user stands (a checkout of an old version)
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("")
    marker = tmp_path / "wrong_copy_ran"
    (other / "readahead.py").write_text(
        f"def reader_main():\n    open({str(marker)!r}, 'w').close()\n    raise SystemExit(1)\n")
    (other.parent / "json.py").write_text(f"open({str(marker)!r}, 'w').close()\n")  # a user's file named as a module
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(R, "PREFETCH_MIN", 0)
    monkeypatch.setattr(R, "AHEAD_FILE_MIN", 0)
    readers, real = [], R.Reader.__init__
    monkeypatch.setattr(R.Reader, "__init__", lambda self, *a, **k: readers.append(self) or real(self, *a, **k))
    w = Workspace(home)
    w.create("m", preset_name="nano")
    rep = w.queue("m").add_paths([d])
    assert readers and not marker.exists() and not any(r.lost for r in readers)
    assert len(rep.added) == 5


def _stored(w: Workspace, name: str, d: Path) -> tuple[tuple, Queue]:
    "Folder `d` added to a new model `name`: its rows, tokens, refusals, duplicates and paragraph records, its queue."
    w.create(name, preset_name="nano")
    rep = w.queue(name).add_paths([d])
    q = w.queue(name)
    rows = [{k: r[k] for k in ("source", "hash", "chars", "bytes", "tokens")} for r in q.rows()]
    c = q.corpus()
    return (rows, c.read(0, len(c)).tolist(), sorted(rep.rejected), sorted(rep.duplicates),
            (q.dir / "paragraphs.bin").read_bytes()), q


def _large_text_folder(d: Path) -> Path:
    "A text file cut in three (in ordinary text, around a paragraph of 4.5 MB), its copy, one bad at the end."
    d.mkdir()
    para = "The crystal clock keeps time by the turning of its lattice, ring by ring. "
    lines = [f"{para}Part {i}, ünïcode.\n\n" if i % 7 else f"Line {i} ends in a tab\t\r\n  indented\xa0\n\n\n"
             for i in range(60_000)]
    a, b = "".join(lines), "".join(lines[::-1])
    (d / "big.md").write_text(a + "word " * 900_000 + "\n\n" + b, newline="")                 # 5.1 + 4.5 + 5.1 MB
    (d / "copy.txt").write_bytes((d / "big.md").read_bytes())
    (d / "late.txt").write_bytes(b.encode() + b"bad \xff byte\n")
    (d / "small.txt").write_text("A small file, read by the writing process itself.\n")
    return d


def test_a_large_file_cut_between_reading_processes_stores_the_same(home, tmp_path, monkeypatch):
    import crystalline_nb.queue as Q
    import crystalline_nb.readahead as R
    d = _large_text_folder(tmp_path / "in")
    w = Workspace(home)
    results, items, held, calls, killed = {}, [], {}, [], []
    real_init, real_recv = R.Reader.__init__, R.Reader.recv

    def init(self, paths, prepare=True, **k):
        items.extend(paths)
        held[id(self)] = [p for p in paths if isinstance(p, tuple) and p[3]]  # its spilled parts
        real_init(self, paths, prepare, **k)

    def recv(self):  # in "lost", a reading process that spills a part dies once a few messages came
        calls.append(1)
        # alive or already done (a fast reader, a busy writer): what was not taken is dropped as a death would lose it
        if lose and held[id(self)] and len(calls) > 3 and self not in killed:
            killed.append(self)
            _kill_reader(self)
        return real_recv(self)
    monkeypatch.setattr(R.Reader, "__init__", init)
    monkeypatch.setattr(R.Reader, "recv", recv)
    monkeypatch.setattr(Q.os, "cpu_count", lambda: 3)
    monkeypatch.setattr(R, "PREFETCH_MIN", 0)
    for name, split_min, lose in (("here", 1 << 60, False), ("cut", 0, False), ("lost", 0, True)):
        monkeypatch.setattr(R, "SPLIT_MIN", split_min)
        monkeypatch.setattr(R, "AHEAD_FILE_MIN", 1 << 60 if name == "here" else 1 << 20)
        items.clear()
        calls.clear()
        results[name], q = _stored(w, name, d)
        parts = [p for p in items if isinstance(p, tuple)]
        assert (name, len(parts)) in (("here", 0), ("cut", 9), ("lost", 9)), name     # big.md, copy.txt, late.txt
        assert not list(q.shards.glob(".tmp-*"))                                             # no spilled part left
    assert results["here"] == results["cut"] == results["lost"] and killed
    rows, _, rejected, dups, _ = results["cut"]
    assert [Path(r["source"]).name for r in rows] == ["big.md", "small.txt"]
    assert [(Path(s).name, r.split(" (")[0]) for s, r in rejected] == [("late.txt", "not valid UTF-8")]
    assert [(Path(s).name, Path(o).name) for s, o in dups] == [("copy.txt", "big.md")]


def test_files_cleaned_ahead_are_copied_without_copy_file_range(home, tmp_path, monkeypatch):
    "Where the kernel cannot copy between the two files (another file system), or stops part way, they are copied here."
    R, d, w = _read_here_then_ahead(home, tmp_path, monkeypatch)
    real, calls = os.copy_file_range, []

    def part_way(src, dst, count, *a, **k):  # 1000 bytes of the first file, then the call is refused
        calls.append(count)
        if len(calls) == 1:
            return real(src, dst, min(count, 1000), *a, **k)
        raise OSError(18, "Invalid cross-device link")
    monkeypatch.setattr(R.os, "copy_file_range", part_way)
    w.create("copied", preset_name="nano")
    rep = w.queue("copied").add_paths([d])
    assert len(calls) >= 3 and len(rep.added) == 5
    assert texts_of(w.queue("copied")) == texts_of(w.queue("here"))


def _small_files_folder(d: Path) -> Path:
    "Many small files of every kind (the mixed folder's, ten times over), with a few larger ones between them."
    d.mkdir()
    for i in range(10):
        _mixed_folder(d / f"m{i}")
        (d / f"m{i}" / "own.txt").write_text(f"A file of its own, number {i}.\n\nIts second paragraph, long enough.\n")
        (d / f"m{i}" / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    return d


def test_small_files_read_ahead_in_groups_store_the_same(home, tmp_path, monkeypatch):
    import crystalline_nb.queue as Q
    import crystalline_nb.readahead as R
    d = _small_files_folder(tmp_path / "in")
    w = Workspace(home)
    results, jobs, calls, done = {}, [], [], []
    real_init, real_recv, real_entry = R.Reader.__init__, R.Reader.recv, R.Group.entry

    def init(self, paths, prepare=True, **k):
        jobs.append(paths)
        real_init(self, paths, prepare, **k)

    def recv(self):  # in "lost", the first reading process dies once two groups were taken from it
        calls.append(1)
        # alive or already done (a fast reader, a busy writer): what was not taken is dropped as a death would lose it
        if name == "lost" and len(calls) == 3:
            done.append(name)
            _kill_reader(self)
        return real_recv(self)

    def entry(self, j):  # in "gone", the second group's file is gone when its first file is copied
        e = real_entry(self, j)
        if name == "gone" and self.i == 1 and j == 0:
            done.append(name)
            self.spill.unlink()
        return e
    monkeypatch.setattr(R.Reader, "__init__", init)
    monkeypatch.setattr(R.Reader, "recv", recv)
    monkeypatch.setattr(R.Group, "entry", entry)
    monkeypatch.setattr(Q.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(R, "AHEAD_FILE_MIN", 20_000)  # a.txt, b.py, g.txt, h.md, z.txt are read one by one
    monkeypatch.setattr(R, "GROUP_FILES", 3)
    for name in ("here", "groups", "lost", "gone"):
        monkeypatch.setattr(R, "GROUPS_MIN", 1 << 60 if name == "here" else 8)
        jobs.clear()
        calls.clear()
        results[name], q = _stored(w, name, d)
        groups = [it for job in jobs for it in job if isinstance(it, dict)]
        assert max([len(g["group"]) for g in groups], default=0) == (0 if name == "here" else 3), name
        assert not list(q.shards.glob(".tmp-*"))                                         # no group's file left
    assert results["here"] == results["groups"] == results["lost"] == results["gone"] and done == ["lost", "gone"]
    rows, _, rejected, dups, _ = results["groups"]
    assert len(rows) == 5 + 10 and len(rows) + len(dups) + len(rejected) == 10 * 11     # m0's five, each own.txt
    assert len(rejected) == 30 and {Path(f).name for f, _ in rejected} == {"e.txt", "f.txt", "pic.png"}


def test_no_shard_is_left_that_no_row_references(ws):
    "A shard whose sources all went in through another writer meanwhile, and one a killed writer committed: removed."
    q = ws.queue("m")
    with q.ingestion() as a, q.ingestion() as b:
        assert a.add("a1", "text", lambda: iter(["the same text, written by two writers at once"]))[0] == "added"
        assert b.add("b1", "text", lambda: iter(["the same text, written by two writers at once"]))[0] == "added"
        b.flush()
        kept, dups = a.flush()
        assert not kept and dups == [("a1", "b1")]
    shards = lambda: sorted(p.name for p in q.shards.iterdir())
    assert shards() == sorted({r["shard"] for r in q.rows()})  # a's shard, which nothing used, is gone
    (q.shards / "0123456789abcdef.bin").write_bytes(b"committed, then the writer was killed before its rows")
    q.add_text("a later ingestion, alone", source="later")
    assert shards() == sorted({r["shard"] for r in q.rows()}) and len(q.rows()) == 2
