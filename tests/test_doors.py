"""One action, one result: the same content stored as the same text whatever the door (add, inbox, upload, crawl,
import), and the same command training the same model whatever the process count."""
import functools
import http.server
import json
import subprocess
import threading
import numpy as np
import pytest
from crystalline_nb.workspace import Workspace
from crystalline_nb.crawler import Crawler, CrawlSettings
from conftest import BIN, cllm_env

# a page whose <pre> holds aligned comments and a compiler's arrow: spaces inside it are meaning, not layout
PAGE = """<!DOCTYPE html><html><head><title>Ownership</title></head><body><nav><a href="/">Home</a></nav><main>
<h1>What is ownership?</h1>
<p>Each value has an owner.  There can only be one owner at a time, and when the owner goes out of scope, the value
is dropped. These rules are checked   by the compiler, and a program that breaks them does not compile.</p>
<pre><code>    {                      // s is not valid here, since it's not yet declared
        let s = "hello";   // s is valid from this point forward

        // do stuff with s
    }                      // this scope is now over, and s is no longer valid
</code></pre>
<pre>error[E0382]: borrow of moved value: `s1`
 --> src/main.rs:5:28
  |
2 |     let s1 = String::from("hello");
  |         -- move occurs because `s1` has type `String`
</pre>
<p>The second block is what the compiler prints; its arrows point at columns of the line above.</p>
</main></body></html>
"""
TEXT = "def f(x):\n    return x  # aligned    comment\n\n\n\ntable:  a   b\n        1   2\n"


@pytest.fixture
def served(tmp_path):
    "A folder with the page and a text file, served on 127.0.0.1 by this test."
    site = tmp_path / "site"
    site.mkdir()
    (site / "ownership.html").write_text(PAGE)
    (site / "notes.txt").write_text(TEXT)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    handler = functools.partial(Quiet, directory=str(site))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield site, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def stored(ws, name) -> list[bytes]:
    "The stored text of each source of model `name`, as UTF-8."
    c, tok = ws.queue(name).corpus(), ws.load(name).tokenizer
    return [tok.decode_bytes(c.read(int(c.starts[i]), int(c.starts[i + 1]))) for i in range(len(c.rows))]


def test_crawl_add_inbox_and_upload_store_the_same_text(home, served):
    site, base = served
    ws = Workspace(home)
    for n in ("added", "dropped", "crawled"):
        ws.create(n, preset_name="nano")
    ws.queue("added").add_paths([site / "ownership.html", site / "notes.txt"])
    inbox = ws.path("dropped") / "inbox"
    inbox.mkdir(exist_ok=True)
    for f in ("ownership.html", "notes.txt"):
        (inbox / f).write_bytes((site / f).read_bytes())
    ws.queue("dropped").ingest_inbox()
    st = CrawlSettings(max_pages=2, delay=0, depth=0)
    rep = Crawler(ws, "crawled", st).run([f"{base}/ownership.html", f"{base}/notes.txt"])
    assert rep.queued == 2, rep.summary()
    added = stored(ws, "added")
    assert b"    }                      // this scope is now over" in added[0]
    assert b" --> src/main.rs:5:28\n  |\n2 |     let s1" in added[0]
    assert b"return x  # aligned    comment" in added[1]
    assert sorted(stored(ws, "dropped")) == sorted(added)  # the inbox is read in name order
    assert stored(ws, "crawled") == added
    hashes = lambda n: sorted(r["hash"] for r in ws.queue(n).rows())
    assert hashes("crawled") == hashes("added") == hashes("dropped")
    (site / "saved-page").write_text(PAGE)  # a page saved without its suffix is read as a page, as a crawl reads it
    ws.create("saved", preset_name="nano")
    ws.queue("saved").add_paths([site / "saved-page"])
    assert stored(ws, "saved") == added[:1]


def test_panel_upload_stores_what_add_stores(home, served):
    from crystalline_nb.panel import ControlPanel
    site, _ = served
    ws = Workspace(home)
    ws.create("added", preset_name="nano")
    ws.create("uploaded", preset_name="nano")
    ws.queue("added").add_paths([site / "ownership.html"])
    app = ControlPanel(home=home)
    app.model.value = "uploaded"
    app.data.upload([dict(name="ownership.html", content=memoryview((site / "ownership.html").read_bytes()))])
    assert stored(ws, "uploaded") == stored(ws, "added"), app.message.value


def test_import_keeps_the_stored_text_and_tokens(home):
    "Sources cleaned as text and as prose are copied as stored: same tokens, same hashes; `cllm eval` knows them."
    import glob
    files = sorted(glob.glob("/usr/lib/python3.11/heap*.py")) + sorted(glob.glob("/usr/lib/python3.11/json/*.py"))
    ws = Workspace(home)
    ws.create("src", preset_name="nano")
    ws.create("dst", preset_name="nano")
    q = ws.queue("src")
    q.add_paths(files)
    q.add_text("A  paragraph of   prose with   runs of blanks\n\n\n\nand blank lines.", source="prose")
    r = subprocess.run([BIN / "cllm", "import-queue", "dst", "--from", "src"], env=cllm_env(home), capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    a, b = ws.queue("src").corpus(), ws.queue("dst").corpus()
    assert len(a) == len(b) and np.array_equal(a.read(0, len(a)), b.read(0, len(b)))
    assert [r["hash"] for r in ws.queue("src").rows()] == [r["hash"] for r in ws.queue("dst").rows()]
    tree = b"          3               4                5               6\n\n      7       8       9       10"
    assert tree in open(files[0], "rb").read() and tree in stored(ws, "dst")[0]  # heapq.py's ASCII tree, as written
    assert stored(ws, "dst")[-1] == b"A paragraph of prose with runs of blanks\n\nand blank lines."
    out = subprocess.run([BIN / "cllm", "eval", "dst", files[0], "--json", "--no-record"], env=cllm_env(home),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["files"][0]["trained_on"] is True
