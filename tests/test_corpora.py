"""Corpora as they come: compressed files (gzip, bzip2, xz, zstandard), Parquet and Arrow tables, `datasets` folders,
CSV and JSON lines with named text fields; documents keep their boundaries; damaged streams and bombs are refused."""

import bz2, gzip, json, lzma, re, subprocess
import numpy as np
import pytest
import zstandard
import pyarrow as pa
import pyarrow.parquet as pq
from crystalline_nb.workspace import Workspace
import crystalline_nb.ingest as I
from conftest import BIN, cllm_env

ROWS = [{"id": i, "body": f"Row {i}: the clock lattice turns its rings at {i * 7} different speeds, said once."}
        for i in range(40)]
ROWS[3] = {"id": 3, "url": "https://example.org/3"}  # a row without text
COMPRESS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress,
            ".zst": lambda b: zstandard.ZstdCompressor(write_checksum=True).compress(b)}


@pytest.fixture
def ws(home):
    w = Workspace(home)
    w.create("m", preset_name="nano")
    return w


def stored(ws, name="m") -> list[list[int]]:
    "The token ids of each source in the queue of `name`."
    q = ws.queue(name)
    c = q.corpus()
    ids = c.read(0, len(c))
    out, at = [], 0
    for r in q.rows():
        out.append(ids[at: at + r["tokens"]].tolist())
        at += r["tokens"]
    return out


def jsonl(rows, field="body") -> bytes:
    return "".join(json.dumps({("text" if k == field else k): v for k, v in r.items()}) + "\n" for r in rows).encode()


def cllm(ws, *args):
    return subprocess.run([str(BIN / "cllm"), *map(str, args)], capture_output=True, text=True, env=cllm_env(ws.home),
                          timeout=600)


def test_compressed_files_store_what_the_plain_file_stores(ws, tmp_path):
    "gz, bz2, xz and zst, known by their first bytes, read as the format under them: the same tokens as uncompressed."
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "rows.jsonl").write_bytes(jsonl(ROWS))
    (plain / "notes.txt").write_bytes(b"A note written   as text.\n\n  kept as written\n" * 50)
    ws.queue("m").add_paths([plain / "rows.jsonl", plain / "notes.txt"])
    want = stored(ws)
    for suf, comp in COMPRESS.items():
        ws.create(suf[1:], preset_name="nano")
        d = tmp_path / suf[1:]
        d.mkdir()
        (d / f"rows.jsonl{suf}").write_bytes(comp((plain / "rows.jsonl").read_bytes()))
        (d / f"notes{suf}").write_bytes(comp((plain / "notes.txt").read_bytes()))  # no inner name: by content
        rep = ws.queue(suf[1:]).add_paths([d / f"rows.jsonl{suf}", d / f"notes{suf}"])
        assert len(rep.added) == 2 and not rep.rejected, rep.rejected
        assert stored(ws, suf[1:]) == want, suf
    rows = ws.queue("gz").rows()
    assert rows[0]["documents"] == 39 and rows[0]["empty_documents"] == 1
    # documents keep their boundaries: an end-of-sequence token between two rows, none glued
    assert want[0].count(ws.queue("m").tokenizer.eos_id) == 39


def test_damaged_cut_and_exploding_streams_are_refused_and_add_nothing(ws, tmp_path, monkeypatch):
    tmp_path = tmp_path / "in"
    tmp_path.mkdir()
    data = jsonl(ROWS) * 20
    for suf, comp in COMPRESS.items():
        whole = comp(data)
        (tmp_path / f"cut.jsonl{suf}").write_bytes(whole[: len(whole) * 2 // 3])
        bad = bytearray(whole)
        bad[len(bad) // 2] ^= 0x55
        (tmp_path / f"bad.jsonl{suf}").write_bytes(bytes(bad))
    (tmp_path / "named.gz").write_text("not compressed at all")
    q = ws.queue("m")
    rep = q.add_paths([tmp_path])
    why = dict(rep.rejected)
    assert not rep.added and len(why) == 9, why
    for suf, kind in {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}.items():
        cut = why[str(tmp_path / f"cut.jsonl{suf}")]
        assert cut.startswith(f"a damaged or cut {kind} stream (before compressed byte "), cut
        assert str(tmp_path / f"bad.jsonl{suf}") in why  # refused (by its check, or by what came out of it)
    assert why[str(tmp_path / "named.gz")] == "named .gz but not gzip-compressed (its first bytes say otherwise)"
    assert q.rows() == [] and not list(q.shards.glob("*.bin"))  # nothing half-added
    monkeypatch.setattr(I, "EXPAND_FLOOR", 1 << 20)  # a bomb: 64 MiB of one byte, 64 KiB compressed
    (tmp_path / "bomb.txt.gz").write_bytes(gzip.compress(b"a" * (64 << 20)))
    rep = q.add_paths([tmp_path / "bomb.txt.gz"])
    assert re.match(r"expands past \d+ MiB \(the limit: 100 times its size, at least 1 MiB\): refused as a compr",
                    rep.rejected[0][1]), rep.rejected
    assert q.rows() == []


def test_tables_and_a_saved_datasets_folder_give_one_document_a_row(ws, tmp_path):
    "Parquet, Arrow files and streams, a save_to_disk folder, CSV and TSV: each row a document, named text fields."
    tmp_path = tmp_path / "in"
    tmp_path.mkdir()
    t = pa.table({"id": [r["id"] for r in ROWS], "body": [r.get("body") for r in ROWS]})
    pq.write_table(t, tmp_path / "t.parquet", row_group_size=7)
    with pa.ipc.new_file(tmp_path / "t.arrow", t.schema) as w:
        w.write_table(t, max_chunksize=5)
    ds = tmp_path / "saved"
    ds.mkdir()
    with pa.ipc.new_stream(ds / "data-00000-of-00001.arrow", t.schema) as w:
        w.write_table(t)
    (ds / "dataset_info.json").write_text(json.dumps({"features": {"id": {}, "body": {}}}))
    (ds / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    body = lambda r: (r.get("body") or "").replace('"', '""')
    (tmp_path / "t.csv").write_text("id,body\n" + "".join(f'{r["id"]},"{body(r)}"\n' for r in ROWS))
    (tmp_path / "t.tsv").write_text("id\tbody\n" + "".join(f'{r["id"]}\t{r.get("body") or ""}\n' for r in ROWS))
    r = cllm(ws, "add", "m", tmp_path / "t.parquet")
    assert r.returncode == 1 and r.stderr.strip() == ("error: " + str(tmp_path / "t.parquet") + ": no text field "
                                                      "(text or content): columns id, body; use --text-field body")
    r = cllm(ws, "add", "m", tmp_path, "--text-field", "body")
    assert r.returncode == 0, r.stderr
    assert "t.arrow: 1 of 40 rows without text (no text field, or an empty one) left out" in r.stdout
    assert r.stdout.count("rows without text") == 1  # said once, for the file that went in (the others: duplicates)
    rows = {x["source"].rsplit("/", 1)[-1]: x for x in ws.queue("m").rows()}
    assert list(rows) == ["t.arrow"] and rows["t.arrow"]["documents"] == 39
    dups = [ln for ln in r.stdout.splitlines() if "already in the queue" in ln]
    assert len(dups) == 4  # the same rows, whatever the table's format: the same text
    refused = {x["source"].rsplit("/", 1)[-1]: x["reason"] for x in ws.queue("m").refused()}
    assert "dataset_info.json" in refused and "saved datasets folder" in refused["dataset_info.json"]
    assert cllm(ws, "add", "m", tmp_path, "--text-field", "body").stdout.startswith("added 0 sources")  # a rerun


def test_json_lines_without_any_text_field_are_refused_and_a_few_missing_rows_are_counted(ws, tmp_path):
    (tmp_path / "meta.jsonl").write_text("".join(json.dumps({"id": i, "url": "u", "summary": "s" * 50}) + "\n"
                                                 for i in range(5)))
    (tmp_path / "mixed.jsonl").write_bytes(jsonl(ROWS))
    r = cllm(ws, "add", "m", tmp_path / "meta.jsonl")
    assert r.returncode == 1 and r.stderr.strip().endswith("no text field (text or content): columns id, url, summary; "
                                                           "use --text-field summary")
    r = cllm(ws, "add", "m", tmp_path / "mixed.jsonl")
    assert r.returncode == 0 and "mixed.jsonl: 1 of 40 rows without text" in r.stdout
    assert r.stdout.count("rows without text") == 1


def test_reading_processes_take_compressed_files_and_tables(ws, tmp_path, monkeypatch):
    "The same queue whether the files are read here or by reading processes."
    import crystalline_nb.readahead as R
    d = tmp_path / "in"
    d.mkdir()
    for k in range(6):
        rows = [{"id": i, "body": f"Part {k}, row {i}: the rings turn at {i * k} speeds, said once."}
                for i in range(40)]
        (d / f"part{k}.jsonl.zst").write_bytes(COMPRESS[".zst"](jsonl(rows)))
        pq.write_table(pa.table({"content": [f"Table {k}, row {i}: words enough for a row." for i in range(30)]}),
                       d / f"t{k}.parquet")
    ws.queue("m").add_paths([d])
    monkeypatch.setattr(R, "PREFETCH_MIN", 0)
    monkeypatch.setattr(R, "AHEAD_FILE_MIN", 0)
    ws.create("ahead", preset_name="nano")
    ws.queue("ahead").add_paths([d])
    assert stored(ws, "ahead") == stored(ws, "m") and len(stored(ws, "m")) == 12
    assert np.all([r["documents"] > 1 for r in ws.queue("ahead").rows()])


def test_rows_already_in_the_queue_are_left_out_one_by_one(ws, tmp_path):
    "A row whose paragraphs are in the queue (or in the file's rows before it) is left out, the others go in."
    para = lambda r, i: f"Row {r}, paragraph {i}: a sentence long enough to count as a paragraph of its own here."
    row = lambda r: {"text": "\n\n".join(para(r, i) for i in range(5))}
    write = lambda name, rs: (tmp_path / name).write_text("".join(json.dumps(x) + "\n" for x in rs))
    write("a.jsonl", [row(r) for r in range(10)])
    write("b.jsonl", [row(r) for r in range(5)] + [row(r) for r in range(100, 105)] + [row(100)])
    for name in ("m", "bpe"):  # the byte path (rows filtered as they stream) and BPE's (short sources batched)
        if name != "m":
            ws.create(name, preset_name="nano", **({"tokenizer": "bpe", "texts": [json.dumps(row(1)) * 20],
                                                    "vocab_size": 300} if name == "bpe" else {}))
        q = ws.queue(name)
        q.add_paths([tmp_path / "a.jsonl"])
        rep = q.add_paths([tmp_path / "b.jsonl"])
        assert len(rep.added) == 1 and rep.added[0]["documents"] == 5 and rep.added[0]["duplicate_documents"] == 6
        assert rep.notes == [f"{tmp_path / 'b.jsonl'}: 6 of 11 rows left out as near-duplicates (most of their "
                             "paragraphs are in the queue, or in its rows before them)"]
        c = q.corpus()
        assert c.read(int(c.starts[1]), int(c.starts[2])).tolist().count(q.tokenizer.eos_id) == 5  # 5 rows, 5 ends
    ws.create("keep", preset_name="nano")
    ws.queue("keep").add_paths([tmp_path / "a.jsonl"])
    rep = ws.queue("keep").add_paths([tmp_path / "b.jsonl"], near_duplicates=False)
    assert rep.added[0]["documents"] == 11 and "duplicate_documents" not in rep.added[0]  # the switch keeps them


def test_the_panel_names_the_text_field_as_cllm_add_does(ws, tmp_path):
    "The Data tab's text field box: the same rows as `cllm add --text-field body`, and the shell line says so."
    from crystalline_nb.panel import ControlPanel
    body = lambda r: (r.get("body") or "").replace('"', '""')
    (tmp_path / "t.csv").write_text("id,body\n" + "".join(f'{r["id"]},"{body(r)}"\n' for r in ROWS))
    assert cllm(ws, "add", "m", tmp_path / "t.csv", "--text-field", "body").returncode == 0
    ws.create("p", preset_name="nano")
    app = ControlPanel(home=ws.home)
    app.model.value = "p"
    app.data.add_path.value, app.data.text_field.value = str(tmp_path / "t.csv"), "body"
    app.data.add()
    assert stored(ws, "p") == stored(ws, "m") and ws.queue("p").rows()[0]["documents"] == 39
    assert app.cli.value.count("--text-field body") == 1 and "rows without text" in app.message.value


def test_eval_reads_tables_with_the_text_field_named_as_add_does(ws, tmp_path):
    "`cllm eval --text-field` scores a Parquet file's rows; the queue's copy of it is flagged as trained on."
    pq.write_table(pa.table({"id": [r["id"] for r in ROWS], "body": [r.get("body") for r in ROWS]}),
                   tmp_path / "t.parquet")
    assert cllm(ws, "add", "m", tmp_path / "t.parquet", "--text-field", "body").returncode == 0
    r = cllm(ws, "eval", "m", tmp_path / "t.parquet", "--json")
    assert r.returncode == 1 and "use --text-field body" in r.stderr
    r = cllm(ws, "eval", "m", tmp_path / "t.parquet", "--text-field", "body", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["files"][0]["trained_on"] is True
