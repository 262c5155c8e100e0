"""Settings written once: the CLI's options, the panel's controls and the library's keyword arguments start from the
defaults of the same dataclass, for every action."""
import html
import inspect
import re
import shlex
from dataclasses import asdict, fields
import pytest
from crystalline_nb.config import (CrawlSettings, GenerateSettings, IngestSettings, ModelSettings, TrainSettings,
                                   preset)
from crystalline_nb.cli import build_parser, options_of
from crystalline_nb.crawler import Crawler
from crystalline_nb.generate import generate, generate_ids, stream
from crystalline_nb.panel import ControlPanel
from crystalline_nb.queue import Queue
from crystalline_nb.trainer import Trainer
from crystalline_nb.workspace import Workspace

VERBS = [(ModelSettings, ["new", "m"]), (IngestSettings, ["add", "m", "x"]), (IngestSettings, ["ingest", "m"]),
         (CrawlSettings, ["crawl", "m", "http://127.0.0.1/"]), (GenerateSettings, ["generate", "m"])]


def defaults(cls) -> dict:
    return {f.name: f.default for f in fields(cls)}


def signature_defaults(fn, cls) -> dict:
    params = inspect.signature(fn).parameters
    return {f.name: params[f.name].default for f in fields(cls)}


@pytest.mark.parametrize("cls,argv", VERBS, ids=[v[1][0] for v in VERBS])
def test_cli_options_start_from_the_dataclass(cls, argv):
    args = build_parser().parse_args(argv)
    assert options_of(cls, args) == defaults(cls)


def test_train_options_and_trainer_keep_what_the_model_stored():
    args = build_parser().parse_args(["train", "m"])
    assert set(options_of(TrainSettings, args).values()) == {None}
    assert set(signature_defaults(Trainer, TrainSettings).values()) == {None}


@pytest.mark.parametrize("fn,cls", [(Workspace.create, ModelSettings), (Queue.add, IngestSettings),
                                    (Queue.add_paths, IngestSettings), (Queue.ingest_inbox, IngestSettings),
                                    (Queue.add_text, IngestSettings), (Crawler, CrawlSettings),
                                    (generate, GenerateSettings), (stream, GenerateSettings),
                                    (generate_ids, GenerateSettings)])
def test_library_signatures_show_the_dataclass_defaults(fn, cls):
    assert signature_defaults(fn, cls) == defaults(cls)


def test_panel_controls_start_from_the_dataclass(home):
    p = ControlPanel(home)
    form = p.models.form_settings()
    cfg = preset(ModelSettings.preset_name)
    assert form == {**defaults(ModelSettings), **{k: getattr(cfg, k) for k in ("n_layer", "d_model", "n_head", "d_ff",
                                                                               "max_seq_len")}}
    c, g = CrawlSettings(), GenerateSettings()
    d = p.data
    assert (d.crawl_pages.value, d.crawl_delay.value, d.crawl_depth.value) == (c.max_pages, c.delay, c.depth)
    t = p.gen
    assert (t.max_tokens.value, t.temperature.value, t.top_k.value, t.top_p.value) == \
        (g.max_tokens, g.temperature, g.top_k, g.top_p)
    assert t.seed.value == "" and g.seed is None
    assert p.train.epochs.value == ModelSettings.target_epochs


def test_a_model_made_by_the_panel_cli_and_library_is_the_same(home, tmp_path):
    "The form's settings, the `cllm new` line it shows, and `Workspace.create` with the same settings: one model."
    from crystalline_nb.cli import main
    p = ControlPanel(home)
    m = p.models
    m.new_name.value, m.new_preset.value = "panel", "nano"
    m.new_layers.value, m.new_pos.value, m.new_biases.value, m.new_dropout.value = 3, "clock", False, 0.1
    settings = m.form_settings()
    m.create()
    assert "created panel" in p.message.value, p.message.value
    line = shlex.split(html.unescape(re.search("<code>(.*)</code>", p.cli.value).group(1)))
    assert line[:4] == ["cllm", "--home", str(home), "new"] and "--layers" in line and "--d-model" not in line
    line[4] = "shell"
    assert main(line[1:]) == 0
    Workspace(home).create("library", **settings)
    ws = Workspace(home)
    cfgs = {n: asdict(ws.config(n)) for n in ("panel", "shell", "library")}
    assert cfgs["panel"] == cfgs["shell"] == cfgs["library"]
    assert cfgs["panel"]["n_layer"] == 3 and cfgs["panel"]["positional"] == "clock" and not cfgs["panel"]["bias"]
