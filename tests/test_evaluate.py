"After training: evaluation on files of one's choosing, export to the Hugging Face format, TensorBoard, comparing runs."
import json, math, signal, subprocess, sys, time
from pathlib import Path
import pytest
import torch
from crystalline_nb.workspace import Workspace
from crystalline_nb.trainer import Trainer
from crystalline_nb.evaluate import evaluate, evaluations, score_tokens
from crystalline_nb.export import export_hf
from crystalline_nb.generate import generate_ids
from crystalline_nb.history import history
from conftest import BIN, cllm_env

TEXT = "".join(f"Line {i}: the clock lattice has rings of twelve, sixty, sixty and one hundred positions.\n"
               for i in range(150))
RUN = dict(batch_size=4, seq_len=32, lr=3e-3, warmup=5, threads=1)


def make(home, name="m", text=TEXT, **kw):
    ws = Workspace(home)
    ws.create(name, preset_name="nano", d_model=32, n_head=2, d_ff=64, max_seq_len=64, **kw)
    src = Path(home) / f"{name}-train.txt"
    src.write_text(text)
    ws.queue(name).add_paths([src])
    return ws, src


def cllm(home, *args, timeout=300):
    return subprocess.run([str(BIN / "cllm"), *map(str, args)], capture_output=True, text=True, env=cllm_env(home),
                          timeout=timeout)


def test_eval_flags_training_data_and_matches_a_hand_computed_loss(home, tmp_path):
    ws, src = make(home)
    Trainer(ws, "m", target_epochs=2, **RUN).run()
    other = tmp_path / "other.md"
    other.write_text("The moon pulls the sea twice a day, and tides follow.\n")
    r = cllm(home, "eval", "m", src, other, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    flags = {Path(f["path"]).name: f["trained_on"] for f in out["files"]}
    assert flags == {"m-train.txt": True, "other.md": False}
    assert out["total"]["trained_on"] and out["total"]["tokens"] == sum(f["tokens"] for f in out["files"])
    # the figures are the model's loss, by hand: every target predicted from its whole past (window = whole text)
    lm = ws.load("m")
    text = other.read_text().strip()
    ids = [lm.tokenizer.eos_id] + lm.tokenizer.encode(text)
    lm.model.eval()
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(torch.tensor([ids[:-1]])), -1)[0]
    nats = -logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum().item()
    f = next(f for f in out["files"] if f["path"].endswith("other.md"))
    assert f["tokens"] == len(ids) - 1 and f["bytes"] == len(text.encode())
    assert abs(score_tokens(lm.model, ids, 64, 64) - nats) < 1e-3
    assert abs(f["nats"] - nats) < 0.02 * nats  # the CLI's default window (32, stride 16) sees less context
    assert abs(f["bits_per_byte"] - f["nats"] / math.log(2) / f["bytes"]) < 1e-9
    table = cllm(home, "eval", "m", src, other).stdout
    assert "trained on" in table and "warning: 1 of 2 file(s)" in table
    assert len(evaluations(ws, "m")) == 2  # each evaluation is recorded beside the history


def test_untrained_byte_model_spends_log2_259_bits_per_byte(home, tmp_path):
    ws, _ = make(home)
    f = tmp_path / "licence.txt"
    f.write_text(Path("/usr/share/common-licenses/GPL-3").read_text()[:6000] if Path(
        "/usr/share/common-licenses/GPL-3").exists() else TEXT[:6000])
    rep = evaluate(ws, "m", [f], record=False)
    assert abs(rep.total.bits_per_byte - math.log2(259)) < 0.05
    assert evaluations(ws, "m") == []


def test_eval_bad_input_is_one_line(home, tmp_path):
    "Each bad input to `cllm eval` is one line (about 13 s: a `cllm` process an input)."
    ws, src = make(home)
    (tmp_path / "bin.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    for args, msg in [(["nope.txt"], "nothing to evaluate"), ([tmp_path / "bin.png"], "unsupported file type"),
                      ([src, "--seq-len", "65"], "max_seq_len (64)"), ([src, "--stride", "0"], "stride must be"),
                      ([src, "--batch-size", "0"], "batch-size must be"), ([src, "--device", "tpu"], "unknown device")]:
        r = cllm(home, "eval", "m", *args)
        assert r.returncode == 1 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    r = cllm(home, "eval", "ghost", src)
    assert r.returncode == 1 and "ghost" in r.stderr


@pytest.mark.parametrize("positional,bias", [("rope", True), ("learned", True), ("clock", True), ("none", True),
                                           ("rope", False), ("learned", False)])
def test_export_loads_in_transformers_with_the_same_logits_tokens_and_ids(home, tmp_path, positional, bias):
    transformers = pytest.importorskip("transformers")
    ws, _ = make(home, positional=positional, bias=bias)
    Trainer(ws, "m", **RUN).run(max_steps=6)  # biases and norms move away from their initial values
    out = tmp_path / "hf"
    r = cllm(home, "export", "m", out)
    assert r.returncode == 0, r.stderr
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    tk = transformers.AutoTokenizer.from_pretrained(out)
    lm = ws.load("m")
    lm.model.eval()
    ids = torch.randint(3, 259, (2, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (lm.model(ids) - hf(ids).logits).abs().max().item() < 1e-4
    prompt = lm.tokenizer.encode("Line 12: the")
    ours = list(generate_ids(lm.model, prompt, max_tokens=20, temperature=0, eos_id=lm.tokenizer.eos_id))
    theirs = hf.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False)[0, len(prompt):].tolist()
    assert theirs[: len(ours)] == ours
    for text in ("Grüße, 世界 🙂\ttabs and\nnewlines", "a literal <eos> and <pad> in a text"):
        assert tk.encode(text, add_special_tokens=False) == lm.tokenizer.encode(text)
    assert tk.decode(lm.tokenizer.encode(text)) == text
    card = (out / "README.md").read_text()
    assert "m-train.txt" in card and "## Data" in card and f"{ws.read_state('m')['steps']:,}" in card
    head = card.split("---")[1]
    assert "license: apache-2.0" in head and "pipeline_tag: text-generation" in head and "## Limitations" in card
    ctx = lm.model.cfg.max_seq_len
    assert f"at most **{ctx} tokens**" in card and tk.model_max_length == ctx  # the context, said and written
    assert hf.config.max_position_embeddings == ctx if positional == "rope" else hf.config.n_positions == ctx


def test_export_bpe_tokenizer_ids_and_refusals(home, tmp_path):
    "An exported BPE model read by transformers gives our ids and logits (about 14 s: importing transformers)."
    transformers = pytest.importorskip("transformers")
    ws = Workspace(home)
    ws.create("b", preset_name="nano", tokenizer="bpe", texts=[TEXT * 3], vocab_size=400, max_seq_len=64)
    export_hf(ws, "b", tmp_path / "b")
    tk = transformers.AutoTokenizer.from_pretrained(tmp_path / "b")
    lm = ws.load("b")
    for text in ["Line 42: the clock lattice", "unseen wörds ünd 🙂", "  spaces   and\ttabs\n", "a literal <eos> here"]:
        assert tk.encode(text, add_special_tokens=False) == lm.tokenizer.encode(text)  # "<eos>" written is text
    ws.create("ang", preset_name="nano", attention_bias="angular")
    r = cllm(home, "export", "ang", tmp_path / "ang")
    assert r.returncode == 1 and "angular" in r.stderr and not (tmp_path / "ang").exists()
    r = cllm(home, "export", "b", tmp_path / "b")
    assert r.returncode == 1 and "not empty" in r.stderr
    assert cllm(home, "export", "b", tmp_path / "b", "--force").returncode == 0  # an earlier export: replaced
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "ideas.md").write_text("a folder of notes")
    r = cllm(home, "export", "b", notes, "--force")  # anything else is never deleted
    assert r.returncode == 1 and "holds what an export does not write (ideas.md)" in r.stderr
    assert (notes / "ideas.md").read_text() == "a folder of notes" and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "afile").write_text("x")
    for extra in ([], ["--force"]):
        r = cllm(home, "export", "b", tmp_path / "afile", *extra)
        assert r.returncode == 1 and r.stderr.strip().endswith("is a file, not a folder: give a folder to write the "
                                                               "export into")
    r = cllm(home, "export", "b", "/proc/nowhere")
    assert r.returncode == 1 and r.stderr.strip() == "error: cannot write /proc/nowhere: No such file or directory"


RUN_TB = """
import sys, json
from crystalline_nb.workspace import Workspace
from crystalline_nb.trainer import Trainer
Trainer(Workspace(sys.argv[1]), "m", tensorboard=True, save_every=4, **json.loads(sys.argv[2])).run()
"""


def test_tensorboard_run_resumed_after_a_kill_has_every_step_once(home):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ws, _ = make(home, text=TEXT * 4)
    p = subprocess.Popen([sys.executable, "-c", RUN_TB, str(home), json.dumps(dict(RUN, target_epochs=3))])
    steps = ws.path("m") / "history" / "steps.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not steps.exists() or len(steps.read_text().splitlines()) < 11):
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed_at = ws.read_state("m")["steps"]
    Trainer(ws, "m", tensorboard=True, **RUN).run(max_steps=5)
    ea = EventAccumulator(str(ws.path("m") / "tensorboard"))
    ea.Reload()
    got = [(e.step, e.value) for e in ea.Scalars("train/loss")]
    want = history(ws, "m")
    assert [s for s, _ in got] == want.step.values.tolist() == list(range(1, killed_at + 6))
    assert max(abs(v - w) for (_, v), w in zip(got, want.loss.values)) < 1e-5
    tps = [e.value for e in ea.Scalars("train/tokens_per_s")]  # one meaning per name: the step's own rate
    assert max(abs(v - w) / w for v, w in zip(tps, want.tokens_per_s.values)) < 1e-4


def test_history_compares_models_in_csv_json_table_and_plot(home, tmp_path):
    "`cllm history` of two models in every format (about 11 s: a `cllm` process a format, and a plot)."
    ws, src = make(home)
    ws.copy("m", "n")
    Trainer(ws, "m", target_epochs=1, **RUN).run()
    Trainer(ws, "n", target_epochs=1, **dict(RUN, lr=1e-3)).run()
    evaluate(ws, "m", [src])
    r = cllm(home, "history", "m", "n", "--format", "csv", "--table", "epochs")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].endswith("train_bits_per_byte,val_bits_per_byte,model")
    assert [ln.rsplit(",", 1)[1] for ln in lines[1:]] == ["m", "n"]
    data = json.loads(cllm(home, "history", "m", "n", "--format", "json").stdout)
    assert [d["model"] for d in data] == ["m", "n"] and data[0]["evaluations"] and not data[1]["evaluations"]
    assert all(s["bits_per_byte"] > 0 for s in data[0]["steps"])
    table = cllm(home, "history", "m", "n", "--plot", tmp_path / "cmp.png").stdout
    assert table.splitlines()[0].split()[:2] == ["model", "steps"] and "*" in table
    assert (tmp_path / "cmp.png").stat().st_size > 5000
    r = cllm(home, "history", "m", "--plot", tmp_path / "no" / "x.png")
    assert r.returncode == 1 and r.stdout == "" and "its folder does not exist" in r.stderr
    one = json.loads(cllm(home, "history", "m", "--format", "json").stdout)
    assert one["model"] == "m" and "bytes_per_token" in one


def test_panel_evaluates_and_compares(home, tmp_path):
    from crystalline_nb.panel import ControlPanel
    ws, src = make(home)
    Trainer(ws, "m", target_epochs=1, **RUN).run()
    p = ControlPanel(home)
    p.select("m")
    p.hist.eval_paths.value = f"{src}"
    p.hist.evaluate()
    assert "trained on" in p.hist.eval_out.value and "cllm" in p.cli.value and " eval m " in p.cli.value
    p.hist.unit.value = "bits"
    p.hist.plot()
    assert "val (bits/byte)" in p.hist.table.value and "includes training data" in p.hist.table.value
    p.hist.eval_paths.value = "  "
    p.hist.evaluate()
    assert "enter one or more files" in p.message.value


def test_eval_flags_a_file_whose_paragraphs_are_in_the_queue_as_an_ingestion_would(home, tmp_path):
    "A file that `cllm add` refuses as a near-duplicate is flagged as trained on, with the share of its paragraphs."
    paras = [f"Paragraph {i}: the clock lattice turns its rings at {i * 7} different speeds, and the hours follow."
             for i in range(8)]
    ws, _ = make(home, text="\n\n".join(paras) + "\n")
    edited = tmp_path / "edited.md"  # the same text with a new title and one line more: not byte-identical
    edited.write_text("# A copy\n\n" + "\n\n".join(paras) + "\n\nOne line that was not there before, in the copy.\n")
    fresh = tmp_path / "fresh.md"
    fresh.write_text("\n\n".join(f"A fresh paragraph number {i} about tides and the moon and nothing else at all."
                                 for i in range(6)) + "\n")
    assert "near-duplicate" in ws.queue("m").add_paths([edited]).duplicates[0][1]  # what ingestion says of it
    r = cllm(home, "eval", "m", edited, fresh, "--json", "--no-record")
    assert r.returncode == 0, r.stderr
    files = {Path(f["path"]).name: f for f in json.loads(r.stdout)["files"]}
    assert files["edited.md"]["trained_on"] and files["edited.md"]["seen"] >= 0.8
    assert not files["fresh.md"]["trained_on"] and files["fresh.md"]["seen"] == 0
    table = cllm(home, "eval", "m", edited, "--no-record").stdout
    assert "in queue" in table and "trained on" in table


def test_eval_says_its_progress(home):
    "A long evaluation says how far it is (cllm eval shows it on a terminal), up to every target of the file."
    ws, src = make(home)
    seen = []
    evaluate(ws, "m", [src], seq_len=32, stride=16, batch_size=2, record=False, progress=lambda **k: seen.append(k))
    done = [k["done"] for k in seen]
    assert len(seen) > 3 and done == sorted(done) and done[-1] == seen[-1]["total"] and seen[-1]["source"] == str(src)
