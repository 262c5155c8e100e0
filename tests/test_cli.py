"`cllm` as a user runs it: real subprocesses, one-line errors, exit codes 2 (usage) and 1 (the rest), no traceback."
import json, os, subprocess, sys
from pathlib import Path
import pytest
from conftest import BIN, cllm_env

CLLM = str(BIN / "cllm")


def run(home, *args, input=None):
    return subprocess.run([CLLM, *args], capture_output=True, text=True, env=cllm_env(home), input=input, timeout=120)


def one_error_line(r, code):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr


def test_round_trip(home, tmp_path):
    "Every verb of the shell on one model, as a user chains them (about 25 s: a `cllm` process a command)."
    r = run(home, "new", "m1", "--preset", "nano", "--layers", "3", "--target-epochs", "4")
    assert r.returncode == 0, r.stderr
    assert "3 layers" in r.stdout
    info = json.loads(run(home, "show", "m1", "--json").stdout)
    assert (info["n_layer"], info["target_epochs"], info["epochs_trained"], info["tokenizer"]) == (3, 4, 0.0, "byte")
    assert info["n_params"] > 0 and info["config"]["positional"] == "rope"
    assert "m1" in run(home, "ls").stdout
    assert json.loads(run(home, "ls", "--json").stdout)[0]["name"] == "m1"
    g1 = run(home, "generate", "m1", "--prompt", "Hi", "--max-tokens", "15", "--seed", "3")
    g2 = run(home, "generate", "m1", "--prompt", "Hi", "--max-tokens", "15", "--seed", "3")
    assert g1.returncode == 0 and g1.stdout == g2.stdout and g1.stdout.startswith("Hi")
    assert run(home, "mv", "m1", "m2").returncode == 0
    assert run(home, "cp", "m2", "m3").returncode == 0
    one_error_line(run(home, "rm", "m2"), 1)                       # no --yes and no terminal: refused
    assert run(home, "rm", "m2", "--yes").returncode == 0
    assert [m["name"] for m in json.loads(run(home, "ls", "--json").stdout)] == ["m3"]


def test_bpe_from_corpus(home, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("the crystal lattice keeps the time of the clock\n" * 50)
    (corpus / "b.md").write_text("# notes\nsixty minutes make an hour, twelve hours make half a day\n" * 50)
    (corpus / "blob.bin").write_bytes(b"\x00\x01\x02" * 100)
    r = run(home, "new", "b", "--preset", "nano", "--tokenizer", "bpe", "--vocab-size", "400", "--corpus", str(corpus))
    assert r.returncode == 0, r.stderr
    info = json.loads(run(home, "show", "b", "--json").stdout)
    assert info["tokenizer"] == "bpe" and 259 < info["vocab_size"] <= 400


@pytest.mark.parametrize("args,code", [
    (["show", "nope"], 1),
    (["new", "../escape"], 1),
    (["new", ".hidden"], 1),
    (["new", "x" * 65], 1),
    (["new", "x", "--d-model", "100", "--heads", "3"], 1),
    (["new", "x", "--layers", "0"], 1),
    (["new", "x", "--layers", "-3"], 1),
    (["new", "x", "--d-model", "99999999"], 1),
    (["new", "x", "--tokenizer", "bpe"], 1),
    (["new", "x", "--tokenizer", "bpe", "--corpus", "/does/not/exist"], 1),
    (["new", "x", "--target-epochs", "0"], 1),
    (["new", "x", "--preset", "gigantic"], 2),  # a choice of the option: a usage error, as --positional
    (["new", "x", "--layers", "three"], 2),
    (["new", "x", "--positional", "spiral"], 2),
    (["frobnicate"], 2),
    (["generate", "nope"], 1),
    (["mv", "nope", "other"], 1),
    (["rm", "nope", "--yes"], 1),
])
def test_bad_input_one_line(home, args, code):
    one_error_line(run(home, *args), code)
    assert not (home / "models").exists() or not any(
        p for p in (home / "models").iterdir() if not p.name.startswith(".")
    )


def test_duplicate_and_bad_generate_settings(home):
    "Each bad setting is one line and exit 1 or 2 (about 20 s: a `cllm` process, torch imported, a setting)."
    assert run(home, "new", "m", "--preset", "nano").returncode == 0
    one_error_line(run(home, "new", "m"), 1)
    one_error_line(run(home, "generate", "m", "--top-p", "0"), 1)
    one_error_line(run(home, "generate", "m", "--temperature", "-1"), 1)
    one_error_line(run(home, "generate", "m", "--max-tokens", "-5"), 1)
    one_error_line(run(home, "generate", "m", "Hi", "--prompt", "Hi"), 1)  # the prompt given twice
    one_error_line(run(home, "generate", "m", "Hi", "there\nand a pasted page " * 200), 2)  # one line, cut
    assert len(run(home, "generate", "m", "a", "b\n" * 5000).stderr) < 300
    same = [run(home, "generate", "m", *p, "--max-tokens", "8", "--seed", "1").stdout
            for p in (["Hi"], ["--prompt", "Hi"])]
    assert same[0] == same[1] and same[0].startswith("Hi")  # the prompt as an argument or as --prompt
    one_error_line(run(home, "mv", "m", "bad/name"), 1)
    assert run(home, "ls").stdout.split()[6] == "m"


def test_corpus_with_no_text(home, tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    (d / "e.txt").write_text("   \n")
    one_error_line(run(home, "new", "x", "--tokenizer", "bpe", "--corpus", str(d)), 1)


def test_help_everywhere(home):
    for verb in ["new", "ls", "show", "mv", "cp", "rm", "generate", "demo"]:
        r = run(home, verb, "--help")
        assert r.returncode == 0 and "usage: cllm " + verb in r.stdout, verb
    r = run(home)
    assert r.returncode == 2 and "new" in r.stdout


def test_panel_notebook_is_written_once(tmp_path):
    "A cell the user added to panel.ipynb survives the next `cllm panel`."
    import json
    from crystalline_nb.cli import panel_notebook
    p = panel_notebook(tmp_path / "home")
    nb = json.loads(p.read_text())
    nb["cells"].append({"cell_type": "code", "id": "mine", "metadata": {}, "execution_count": None, "outputs": [],
                        "source": ["print('my own cell')"]})
    p.write_text(json.dumps(nb))
    assert panel_notebook(tmp_path / "home") == p and "my own cell" in p.read_text()


def test_a_panel_server_left_by_a_killed_cllm_panel_is_replaced(home, tmp_path):
    """`cllm panel` killed with SIGKILL leaves its JupyterLab behind: the next one stops it and honours --port.
    (About 12 s: two JupyterLab servers started and waited for.)"""
    import re, signal
    from crystalline_nb.core import free_port
    env = cllm_env(home)
    jdir = tmp_path / "jupyter"
    env.update(JUPYTER_CONFIG_DIR=str(jdir / "config"), JUPYTER_DATA_DIR=str(jdir / "data"),
               JUPYTER_RUNTIME_DIR=str(jdir / "runtime"), IPYTHONDIR=str(jdir / "ipython"), JUPYTER_PLATFORM_DIRS="1")

    def start(*extra):
        p = subprocess.Popen([str(BIN / "cllm"), "panel", *extra], env=env, stdout=subprocess.PIPE, text=True)
        said = []
        for line in p.stdout:  # until it says where it is
            said.append(line)
            if "control panel: http" in line:
                break
        return p, "".join(said)

    first, _ = start()
    server = json.loads((home / "panel-server.json").read_text())["pid"]
    first.send_signal(signal.SIGKILL)
    first.wait()
    os.kill(server, 0)  # its JupyterLab is still there, with no owner
    port = free_port()
    second, said = start("--port", str(port))
    try:
        assert "stopped the control panel server that a killed `cllm panel` left running" in said, said
        assert re.search(rf"control panel: http://127\.0\.0\.1:{port}/", said), said
        with pytest.raises(ProcessLookupError):
            os.kill(server, 0)
        other = subprocess.run([str(BIN / "cllm"), "panel", "--port", str(free_port())], env=env,
                               capture_output=True, text=True, timeout=60)  # the live one is not replaced
        assert other.returncode == 1 and f"already runs for this workspace on port {port}" in other.stderr
    finally:
        second.terminate()
        second.wait(30)


def test_python_m_runs_the_cli_and_the_wheel_carries_the_license(tmp_path):
    "`python -m crystalline_nb` is `cllm`; the built wheel holds LICENSE, the chart's script and __main__."
    import zipfile
    r = subprocess.run([str(BIN / "python"), "-m", "crystalline_nb", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("crystalline_nb ")
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([str(BIN / "python"), "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(root),
                        "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob("crystalline_nb-*.whl"))).namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert {"crystalline_nb/__main__.py", "crystalline_nb/lossplot.js"} <= set(names)
