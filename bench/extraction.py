"""Extraction fidelity on real documentation pages found on this machine, and crawl speed and scope.

Usage: python bench/extraction.py [--quick]
Part 1, extraction: for each page present on this machine (an mdbook book, rustdoc API pages, a DocBook manual,
gtk-doc and Node.js API pages), the text that `html_to_text` keeps against trafilatura's main-text extraction (what
the package used before): the share of the page's headings and of its code listings (`<pre>`, first line) that
survive, the share of this script's expected lines kept (written here by reading each page), and page chrome
leaked (lines such as "Read more" or "Source" that are links, not text).
Part 2, crawling: the mdbook book and its neighbouring API reference served on 127.0.0.1; a crawl from the book's
first page: pages/s, the share of fetched pages under the start folder, and the cost per page into an empty
model and into one whose queue already holds 20,000 sources (5,000 with --quick). The book's one-page print
version repeats every chapter: whichever comes first is queued, the other is a (near-)duplicate.
"""
import http.server, functools, re, tempfile, threading, time
from pathlib import Path
from common import parser
import lxml.html
from crystalline_nb.ingest import html_to_text, Rejected
from crystalline_nb.workspace import Workspace
from crystalline_nb.crawler import Crawler

RUST = Path.home() / ".rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html"
PAGES = {  # page: lines that must be kept, each on its own line (the reader's view of the page)
    RUST
    / "book/ch01-02-hello-world.html": [
        "Hello, World!",
        "Project Directory Setup",
        'println!("Hello, world!");',
        "Listing 1-1: A program that prints Hello, world!",
        "$ rustc main.rs",
    ],
    RUST
    / "book/ch03-02-data-types.html": [
        "Data Types",
        "Scalar Types",
        "Integer Types",
        "let guess: u32 = \"42\".parse().expect(\"Not a number!\");",
    ],
    RUST
    / "std/vec/struct.Vec.html": ["Struct Vec", "Examples", "let mut vec = Vec::new();", "Capacity and reallocation"],
    RUST / "std/string/struct.String.html": ["Struct String", "UTF-8", "let hello = String::from(\"Hello, world!\");"],
    Path("/usr/share/doc/valgrind/html/manual-core.html"): [
        "2.1. What Valgrind does with your program",
        "valgrind --tool=memcheck ls -l",
        "2.7.3. Error-related Options",
    ],
    Path("/usr/share/doc/valgrind/html/mc-manual.html"): [
        "4.1. Overview",
        "4.2. Explanation of error messages from Memcheck",
    ],
    Path("/usr/share/doc/nodejs/api/fs.html"): ["File system", "Promise example"],
    Path("/usr/share/doc/libxslt1-dev/html/libxslt-xslt.html"): ["xslt"],
}
CHROME = {
    "read more",
    "source",
    "§",
    "run",
    "previous chapter",
    "next chapter",
    "print this book",
    "keyboard shortcuts",
    "table of contents",
    "skip to main content",
    "toggle navigation",
    "edit this page",
    "copy",
    "up",
    "home",
    "next",
    "prev",
}


def trafilatura_text(html: bytes) -> str:
    import trafilatura
    return trafilatura.extract(html, include_comments=False, include_tables=True, deduplicate=False) or ""


def heading(h) -> str:
    "A heading's words, without its buttons and the #, § or ¶ of its permalink."
    for b in h.xpath(".//button"):
        b.drop_tree()
    return " ".join(h.text_content().strip("#§¶ \n").split())


def measure(path: Path, fn) -> dict:
    html = path.read_bytes()
    doc = lxml.html.document_fromstring(html)
    try:
        text = fn(html)
    except Rejected:
        text = ""
    lines = {" ".join(ln.split()) for ln in text.splitlines()}
    flat = " ".join(text.split())
    heads = [heading(h) for h in doc.xpath("//main//h1|//main//h2|//main//h3|//main//h4")
             or doc.xpath("//h1|//h2|//h3|//h4")]
    heads = [h for h in heads if h]
    pres = [next((ln.strip() for ln in p.text_content().splitlines() if ln.strip()), "") for p in doc.iter("pre")]
    pres = [p for p in pres if p]
    want = PAGES[path]
    return dict(heads=sum(h in lines for h in heads) / max(len(heads), 1), n_heads=len(heads),
                code=sum(" ".join(p.split()) in flat for p in pres) / max(len(pres), 1), n_code=len(pres),
                expected=sum(" ".join(w.split()) in lines for w in want) / len(want),
                chrome=sum(ln.lower() in CHROME for ln in lines), chars=len(text),
                blank=text.count("\n\n"))


def extraction_table():
    print("Extraction fidelity (share kept; chrome = chrome lines leaked; paragraphs = blank-line breaks)\n")
    print(
        f"{'page':<34}{'extractor':<13}{'headings':>12}{'code':>12}{'expected':>10}{'chrome':>8}"
        f"{'paragraphs':>12}{'chars':>9}"
    )
    tot = {}
    for path in PAGES:
        if not path.exists():
            print(f"{path.name:<34}(not on this machine)")
            continue
        for name, fn in (("trafilatura", trafilatura_text), ("cllm", html_to_text)):
            m = measure(path, fn)
            t = tot.setdefault(name, [0, 0, 0, 0, 0])
            t[0] += m["heads"] * m["n_heads"]
            t[1] += m["n_heads"]
            t[2] += m["code"] * m["n_code"]
            t[3] += m["n_code"]
            t[4] += m["chrome"]
            label = "/".join(path.parts[-2:])[:33]
            print(f"{label:<34}{name:<13}{m['heads']:>7.0%} of {m['n_heads']:<3}{m['code']:>6.0%} of {m['n_code']:<3}"
                  f"{m['expected']:>10.0%}{m['chrome']:>8}{m['blank']:>12}{m['chars']:>9,}")
    for name, t in tot.items():
        print(
            f"{'all pages':<34}{name:<13}{t[0] / max(t[1], 1):>7.0%} of {t[1]:<3}"
            f"{t[2] / max(t[3], 1):>6.0%} of {t[3]:<3}{'':>10}{t[4]:>8}"
        )


def serve(root: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    h = functools.partial(Quiet, directory=str(root))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def crawl_table(quick: bool):
    if not (RUST / "book/index.html").exists():
        print("\n(no mdbook book on this machine: crawl table skipped)")
        return
    srv = serve(RUST)
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    pages = 40 if quick else 150
    print(
        f"\nCrawl of {base}/book/index.html (the book beside the std, core and cargo references), {pages} pages, "
        "no delay\n"
    )
    print(f"{'queue before':>14}{'pages/s':>10}{'ms/page':>10}{'under /book/':>14}{'queued':>8}{'duplicates':>12}")
    for before in (0, 5000 if quick else 20000):
        ws = Workspace(tempfile.mkdtemp())
        ws.create("web", preset_name="nano")
        if before:
            ws.queue("web").add((f"s{i}", "text", (lambda i=i: iter([f"source {i} about clocks and lattices"])))
                                for i in range(before))
        cr = Crawler(ws, "web", delay=0, depth=100, max_pages=pages, timeout=30)
        t0 = time.perf_counter()
        rep = cr.run([base + "/book/index.html"])
        dt = time.perf_counter() - t0
        got = [e["url"] for e in cr.log if not e["url"].endswith("/robots.txt")]
        under = sum("/book/" in u for u in got) / max(len(got), 1)
        print(
            f"{before:>14,}{rep.fetched / dt:>10.1f}{1000 * dt / max(rep.fetched, 1):>10.1f}{under:>14.0%}"
            f"{rep.queued:>8}"
            f"{rep.duplicates:>12}"
        )
    srv.shutdown()


def main():
    a = parser(__doc__).parse_args()
    extraction_table()
    crawl_table(a.quick)


if __name__ == "__main__":
    main()
