"Devices and precision: the plumbing every machine checks (CPU), and the GPU checks where a CUDA GPU is."
import hashlib, subprocess
from pathlib import Path
import pytest
import torch
from crystalline_nb.workspace import Workspace, read_checkpoint
from crystalline_nb.trainer import Trainer, TrainingError
from crystalline_nb.device import resolve_device, DeviceError, available_devices
from crystalline_nb.generate import generate
from crystalline_nb.history import history
from crystalline_nb.model import CLLM
from conftest import BIN, cllm_env

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
NO_ACCEL = pytest.mark.skipif(available_devices() != ["cpu"], reason="this machine has an accelerator")
TEXT = "".join(f"Line {i}: the clock lattice has rings of twelve, sixty, sixty and one hundred positions.\n"
               for i in range(120))
RUN = dict(batch_size=4, seq_len=32, lr=3e-3, warmup=5, threads=1)


def make(home, name="m", **kw):
    ws = Workspace(home)
    ws.create(name, preset_name="nano", d_model=32, n_head=2, d_ff=64, max_seq_len=64, **kw)
    ws.queue(name).add_text(TEXT, source="lines")
    return ws


def fingerprint(p: Path) -> dict:
    return {str(f.relative_to(p)): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(p.rglob("*"))
            if f.is_file()}


def model_files(fp: dict) -> dict:
    "A fingerprint without the history, which may hold rows past the checkpoint (every reader drops them)."
    return {k: v for k, v in fp.items() if not k.startswith("history/")}


def step_losses(ws, name):
    return history(ws, name).loss.values.tolist()


@NO_ACCEL
def test_auto_is_the_cpu_in_fp32_without_accelerators(home):
    ws = make(home)
    tr = Trainer(ws, "m")
    assert (tr.device, tr.precision) == (torch.device("cpu"), "fp32")
    s = Trainer(ws, "m", **RUN).run(max_steps=2)
    assert (s["device"], s["precision"]) == ("cpu", "fp32")


@NO_ACCEL
@pytest.mark.parametrize("argv", [["train", "m", "--device", "cuda"], ["train", "m", "--device", "cuda:3"],
                                  ["train", "m", "--device", "mps"], ["train", "m", "--device", "tpu"],
                                  ["train", "m", "--device", "cuda", "--nproc", "2"],
                                  ["generate", "m", "--device", "cuda"]])
def test_a_device_this_machine_lacks_is_one_line_and_changes_nothing(home, argv):
    ws = make(home)
    before = fingerprint(ws.path("m"))
    p = subprocess.run([str(BIN / "cllm"), *argv], capture_output=True, text=True, env=cllm_env(home), timeout=120)
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "device" in lines[0], p.stderr
    assert "Traceback" not in p.stderr
    assert fingerprint(ws.path("m")) == before


def test_library_refuses_unknown_devices_before_loading(home):
    ws = make(home)
    with pytest.raises(DeviceError, match="unknown device"):
        Trainer(ws, "m", device="gpu0")
    with pytest.raises(DeviceError, match="unknown precision"):
        Trainer(ws, "m", precision="fp8")
    lm = ws.load("m")
    with pytest.raises(DeviceError, match="unknown device"):
        generate(lm.model, lm.tokenizer, "x", device="quantum")


def test_bf16_autocast_on_cpu_gives_a_finite_fp32_loss_close_to_fp32(home):
    ws = make(home)
    ws.copy("m", "b")
    a = Trainer(ws, "m", precision="fp32", **RUN).run(max_steps=4)
    b = Trainer(ws, "b", precision="bf16", **RUN).run(max_steps=4)
    la, lb = step_losses(ws, "m"), step_losses(ws, "b")
    assert all(isinstance(v, float) for v in lb)
    assert abs(la[0] - lb[0]) < 0.01 * la[0]  # the same weights, the same batch: only rounding differs
    assert max(abs(x - y) for x, y in zip(la, lb)) < 0.05 * la[0]
    assert (a["precision"], b["precision"]) == ("fp32", "bf16")



@pytest.mark.parametrize("units,precision,noted", [(True, None, True), (True, "auto", True), (True, "fp32", False),
                                                    (False, None, False)])
def test_a_cpu_run_left_at_auto_names_bf16_where_the_cpu_has_bf16_units(home, monkeypatch, units, precision, noted):
    "The default stays fp32 on every CPU. Where bf16 would be faster, a run that did not choose says so at its start."
    import crystalline_nb.trainer as trainer_mod
    monkeypatch.setattr(trainer_mod, "cpu_bf16_units", lambda: units)
    ws = make(home)
    tr = Trainer(ws, "m", device="cpu", precision=precision, **RUN)
    events = []
    tr.subscribe(events.append)
    assert tr.run(max_steps=1)["precision"] == "fp32"
    notes = next(e for e in events if e["type"] == "start")["notes"]
    assert any("--precision bf16" in n for n in notes) == noted, notes

@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_resumes_exactly_on_the_same_device_kind(home, precision):
    "Six steps in one run equal three + three in two runs, loss scaler and random state included."
    ws = make(home, dropout=0.1)
    ws.copy("m", "split")
    Trainer(ws, "m", precision=precision, **RUN).run(max_steps=6)
    Trainer(ws, "split", precision=precision, **RUN).run(max_steps=3)
    ck = read_checkpoint(ws.path("split"), 3)
    assert ("scaler" in ck) == (precision == "fp16")
    Trainer(ws, "split", precision=precision, **RUN).run(max_steps=3)
    assert step_losses(ws, "m") == step_losses(ws, "split")


def test_checkpoints_are_device_free(home):
    ws = make(home)
    Trainer(ws, "m", **RUN).run(max_steps=3)
    ck = read_checkpoint(ws.path("m"), 3)
    tensors = [v for st in ck["optimizer"].values() for v in st.values() if torch.is_tensor(v)]
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    assert ck["device_kind"] == resolve_device("auto").type and ck["torch_rng"].device.type == "cpu"
    assert ws.load("m").model.tok_emb.weight.device.type == "cpu"  # loading never needs the training device


def test_a_batch_that_does_not_fit_is_one_line_and_keeps_the_checkpoint(home, monkeypatch):
    ws = make(home)
    Trainer(ws, "m", **RUN).run(max_steps=2)
    before = fingerprint(ws.path("m"))
    calls, forward = [0], CLLM.forward

    def oom_on_third(self, *a, **k):  # what CUDA raises when a batch does not fit
        calls[0] += 1
        if calls[0] == 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return forward(self, *a, **k)

    monkeypatch.setattr(CLLM, "forward", oom_on_third)
    tr = Trainer(ws, "m", **RUN)
    with pytest.raises(TrainingError) as e:
        tr.run(max_steps=5)
    msg = str(e.value)
    assert "ran out of memory" in msg and "lower --batch-size" in msg and "4 x 32" in msg and "\n" not in msg
    assert "checkpoint is intact" in msg
    assert model_files(fingerprint(ws.path("m"))) == model_files(before)  # the model is where its checkpoint left it
    assert len(step_losses(ws, "m")) == 2
    monkeypatch.setattr(CLLM, "forward", forward)
    assert Trainer(ws, "m", **RUN).run(max_steps=2)["total_steps"] == 4  # and it trains on from there


def test_generation_runs_on_the_chosen_device(home):
    ws = make(home)
    lm = ws.load("m")
    a = generate(lm.model, lm.tokenizer, "Line", max_tokens=12, seed=3, device="cpu")
    b = generate(lm.model, lm.tokenizer, "Line", max_tokens=12, seed=3)
    assert a == b and len(a) > 0


def test_panel_device_and_precision_reach_the_trainer_and_the_shell_line(home):
    from crystalline_nb.panel import ControlPanel
    make(home)
    p = ControlPanel(home)
    p.select("m")
    assert p.train.device.options[:2] == ("auto", "cpu") and p.train.precision.value == "auto"
    p.train.device.value, p.train.precision.value = "cpu", "bf16"
    kw = p.train._run_kwargs()
    assert (kw["device"], kw["precision"]) == ("cpu", "bf16")
    assert "--device cpu --precision bf16" in p.cli.value
    p.train.lock(True)
    assert p.train.device.disabled and p.train.precision.disabled
    p.train.lock(False)


def test_compile_gives_the_same_losses_and_reports_its_warm_up(home):
    "`--compile` trains to the same losses (about 15 s: torch.compile builds the model's C++ kernels)."
    ws = make(home)
    ws.copy("m", "c")
    Trainer(ws, "m", **RUN).run(max_steps=4)
    events = []
    tr = Trainer(ws, "c", compile=True, **RUN)
    tr.subscribe(events.append)
    s = tr.run(max_steps=4)
    assert [e for e in events if e["type"] == "compiled"] and s["first_step_seconds"] > 0 and s["steady_tokens_per_s"]
    for x, y in zip(step_losses(ws, "m"), step_losses(ws, "c")):
        assert abs(x - y) < 1e-4 * x


@CUDA
def test_trained_on_gpu_resumes_and_generates_on_cpu_and_back(home):
    ws = make(home)
    g = Trainer(ws, "m", device="cuda", **RUN).run(max_steps=4)
    assert g["device"].startswith("cuda") and g["precision"] in ("bf16", "fp16")
    ck = read_checkpoint(ws.path("m"), 4)
    assert ck["device_kind"] == "cuda" and all(t.device.type == "cpu" for st in ck["optimizer"].values()
                                               for t in st.values() if torch.is_tensor(t))
    c = Trainer(ws, "m", device="cpu", **RUN).run(max_steps=3)
    assert c["total_steps"] == 7 and c["device"] == "cpu"
    Trainer(ws, "m", device="cuda", **RUN).run(max_steps=2)
    lm = ws.load("m")
    on_cpu = generate(lm.model, lm.tokenizer, "Line", max_tokens=16, temperature=0, device="cpu")
    on_gpu = generate(lm.model, lm.tokenizer, "Line", max_tokens=16, temperature=0, device="cuda")
    assert on_cpu == on_gpu


@CUDA
def test_gpu_resume_is_exact_on_the_same_device_kind(home):
    ws = make(home, dropout=0.1)
    ws.copy("m", "split")
    Trainer(ws, "m", device="cuda", **RUN).run(max_steps=6)
    Trainer(ws, "split", device="cuda", **RUN).run(max_steps=3)
    Trainer(ws, "split", device="cuda", **RUN).run(max_steps=3)
    assert step_losses(ws, "m") == step_losses(ws, "split")


@CUDA
def test_a_real_out_of_memory_on_the_gpu_is_one_line(home):
    ws = Workspace(home)
    ws.create("big", preset_name="small", max_seq_len=1024)
    ws.queue("big").add_text(TEXT * 400, source="lines")
    before = fingerprint(ws.path("big"))
    with pytest.raises(TrainingError, match="ran out of memory"):
        Trainer(ws, "big", device="cuda", precision="fp32", batch_size=65536, seq_len=1024).run(max_steps=1)
    assert model_files(fingerprint(ws.path("big"))) == model_files(before)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_two_gpus_train_one_model(home):
    from crystalline_nb.distributed import run_distributed
    ws = make(home)
    p = run_distributed(home, "m", 2, capture=True, run={"max_steps": 4}, device="cuda", **RUN)
    assert p.returncode == 0, p.stderr
    assert ws.read_state("m")["steps"] == 4


def test_the_gpu_bench_runs_its_path_on_the_cpu(tmp_path):
    "bench/gpu.py measures through the same Trainer path everywhere; on a CPU it is a check of the script."
    import json, sys
    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "gpu.json"
    p = subprocess.run([sys.executable, str(root / "bench" / "gpu.py"), "--device", "cpu", "--presets", "nano",
                        "--steps", "5", "--modes", "fp32", "--out", str(out)], capture_output=True, text=True,
                       timeout=300, cwd=root / "bench")
    assert p.returncode == 0, p.stderr
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 1 and rows[0]["tokens_per_s"] > 0 and 0 < rows[0]["mfu"] < 1


def test_mfu_is_never_over_one_when_the_peak_was_measured_at_a_busy_moment():
    import torch
    from crystalline_nb import device as D
    key = ("cpu", "fp32", torch.get_num_threads())
    D.matmul_peak("cpu", "fp32")
    true_peak = D._PEAK[key]
    D._PEAK[key] = true_peak / 50  # as if measured while other work had the cores
    util, peak = D.mfu(true_peak / 10, "cpu", "fp32")  # a run faster than that peak
    assert util <= 1.0 and peak >= true_peak / 10 and D._PEAK[key] == peak
    assert D.mfu(peak / 4, "cpu", "fp32") == (0.25, peak)  # below the peak: no new measurement


HEAP = """
import os, sys, threading, torch
from crystalline_nb.device import steady_heap
MiB = 1 << 20
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MiB
def step():  # what a training step does: take 20 MB of activations and free them
    t = torch.ones(5 * MiB)
    used = rss()
    del t
    print(used, rss())
with steady_heap():
    step()
    th = threading.Thread(target=step)  # the panel trains in a thread of the kernel
    th.start()
    th.join()
print(rss())
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists() or not hasattr(__import__("ctypes").CDLL(None), "mallopt"),
                    reason="glibc on Linux only")
def test_a_run_keeps_freed_activations_for_the_next_step_and_hands_them_back_after():
    "Within `steady_heap` what a step frees stays resident, on the main thread and in a thread. Afterwards it goes."
    out = subprocess.run([str(BIN / "python"), "-c", HEAP], capture_output=True, text=True, check=True).stdout.split()
    main_used, main_kept, thread_used, thread_kept, after = map(float, out)
    assert main_kept > main_used - 5 and thread_kept > thread_used - 5  # no page handed back within a run
    assert after < main_kept - 15  # the main heap's free top handed back when the run ends
