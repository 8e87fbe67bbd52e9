"""`dvc plots show` / `dvc plots diff` pages render without network.

A minimal DVC repo gets this repo's dvc.yaml, .dvc/config and plot page template, plus small
made-up data for every file the dvc.yaml `plots:` section reads. DVC writes the page; headless
Chromium opens it with every network request refused; the dumped DOM must hold one drawn view
per plot definition, with a line of the expected points for every data file, revision and field.
The same page from DVC's stock template (vega from a CDN) must draw nothing: the control that
shows the check can fail.

Needs the `chromium` Debian package: .ci/run installs it and sets CI=1, and in CI a missing
browser fails the test; elsewhere it is skipped.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = REPO / "dvc_plots_template"
CURVE_TEMPLATES = {None, "linear", "simple", "smooth"}  # dvc-render templates that draw lines


# ---------------------------------------------------------------- the template file itself

def load_build_module():
    spec = importlib.util.spec_from_file_location("plots_template_build", TEMPLATE_DIR / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_template_is_the_pinned_libraries_and_dvc_uses_it():
    build = load_build_module()
    page = build.OUTPUT.read_text(encoding="utf-8")
    assert page.count("{plot_divs}") == 1
    assert "{scripts}" not in page, "DVC would insert its CDN <script> tags there"
    assert not re.search(r"<script[^>]*\ssrc=|<link[^>]*\shref=", page), "the page must not load anything"
    header = page[: page.index("<html>")]
    for name, (version, integrity) in build.PINS.items():
        match = re.search(rf"{re.escape(name)} {re.escape(version)} \(npm {re.escape(integrity)}; "
                          r"inlined build sha256 ([0-9a-f]{64})\)", header)
        assert match, f"{name} {version} is pinned in build.py but not in offline.html: run build.py"
        body = re.search(rf"<script>/\* {re.escape(name)} {re.escape(version)} \*/\n(.*?)\n    </script>",
                         page, re.DOTALL)
        assert body and hashlib.sha256(body.group(1).encode()).hexdigest() == match.group(1), \
            f"the inlined {name} differs from what build.py wrote: run build.py, do not edit offline.html"
    config = subprocess.run([sys.executable, "-m", "dvc", "config", "plots.html_template"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.strip()
    assert (REPO / ".dvc" / config).resolve() == build.OUTPUT  # DVC resolves it relative to .dvc/


# ---------------------------------------------------------------- a repo with made-up plot data

@dataclass
class Series:
    """One line DVC should draw: a field of a file, at one revision."""
    file: str
    field: str | None  # None: DVC picks the file's last column
    rows: int
    first: int  # the first y value; every series' values are unique on the page


@dataclass
class Definition:
    name: str
    template: str | None
    files: dict[str, list[str | None]]  # data file -> y fields
    x: dict[str, str | None]  # data file -> x field
    series: dict[str, list[Series]] = field(default_factory=dict)  # revision -> lines


def plot_definitions(dvc_yaml: Path) -> list[Definition]:
    """The top-level `plots:` of dvc.yaml, in the forms DVC accepts (path, or id with props)."""
    definitions = []
    for entry in yaml.safe_load(dvc_yaml.read_text())["plots"]:
        name, props = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
        props = props or {}
        y, x = props.get("y"), props.get("x")
        if isinstance(y, dict):
            files = {f: [v] if isinstance(v, str) else list(v) for f, v in y.items()}
        else:
            files = {name: [y] if isinstance(y, str) else list(y or [None])}
        xs = {f: x.get(f) if isinstance(x, dict) else x for f in files}
        definitions.append(Definition(name, props.get("template"), files, xs))
    return definitions


def write_table(path: Path, columns: list[str], rows: list[list[int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".csv", ".tsv"):
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh, delimiter="," if path.suffix == ".csv" else "\t", lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(rows)
    elif path.suffix == ".json":
        path.write_text(json.dumps([dict(zip(columns, row)) for row in rows]))
    else:
        pytest.fail(f"dvc.yaml plots {path}: this test makes up .csv/.tsv/.json data only; extend write_table")


def make_data(root: Path, definitions: list[Definition], revision: str, extra_rows: int, offset: int) -> None:
    """Write every plotted file; record in each definition the lines `revision` should show.

    File i gets 3 + i + extra_rows rows: its x columns count the rows, and its k-th y column
    over all files holds offset + 100 * k + row, so a line's first value says which line it is.
    """
    x_cols: dict[str, set[str]] = {}
    y_cols: dict[str, list[str]] = {}
    for d in definitions:
        for f, ys in d.files.items():
            x_cols.setdefault(f, set()).update([d.x[f]] if d.x[f] else [])
            cols = y_cols.setdefault(f, [])
            cols += [y for y in ys if y is not None and y not in cols and y not in x_cols[f]]
    k = 0
    lines: dict[tuple[str, str], Series] = {}
    for i, f in enumerate(sorted(y_cols)):
        ys = y_cols[f] or ["value"]
        n = 3 + i + extra_rows
        table = {x: list(range(n)) for x in sorted(x_cols[f])}
        for y in ys:
            k += 1
            lines[f, y] = Series(f, y, rows=n, first=offset + 100 * k)
            table[y] = [offset + 100 * k + r for r in range(n)]
        write_table(root / f, list(table), [list(row) for row in zip(*table.values())])
        y_cols[f] = ys
    for d in definitions:  # a file plotted without y: DVC draws its last column
        d.series[revision] = [lines[f, y if y is not None else y_cols[f][-1]] for f, ys in d.files.items() for y in ys]


def sh(cmd: list[str], cwd: Path, env: dict | None = None) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture
def plots_repo(tmp_path) -> tuple[Path, dict, list[Definition]]:
    """git + DVC repo: this repo's dvc.yaml, .dvc files and template; data committed, then changed."""
    repo = tmp_path / "repo"
    for name in ["dvc.yaml", "params.yaml", ".dvc/config", ".dvc/.gitignore", ".dvcignore"]:  # dvc.yaml reads params
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, repo / name)
    shutil.copytree(TEMPLATE_DIR, repo / TEMPLATE_DIR.name, ignore=shutil.ignore_patterns("__pycache__"))
    env = os.environ | {"PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
                        "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    definitions = plot_definitions(repo / "dvc.yaml")
    make_data(repo, definitions, "HEAD", extra_rows=0, offset=0)
    sh(["git", "init", "-q"], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "plots"], repo, env)
    make_data(repo, definitions, "workspace", extra_rows=1, offset=50)
    return repo, env, definitions


# ---------------------------------------------------------------- the page in a browser

@pytest.fixture
def browser() -> str:
    """Chromium's path; checked before DVC runs, so a skip is quick."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed: .ci/run installs it (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium); in CI this test fails instead")


def rendered_dom(browser: str, page: Path, tmp_path: Path) -> str:
    """The page's DOM after its scripts ran, in headless Chromium with the network refused."""
    profile = tmp_path / f"chromium-profile-{page.parent.name}"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",  # every request goes nowhere
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom", page.as_uri()]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0 and "</html>" in result.stdout, f"chromium failed:\n{result.stderr[-3000:]}"
    return result.stdout


@dataclass
class View:
    id: str
    svgs: int = 0
    marks: int = 0  # vega mark containers of any kind
    lines: list[dict] = field(default_factory=list)  # line marks: their aria-label fields and point count


class Views(HTMLParser):
    """The vega-embed views of a dumped page and the line marks vega drew in each (SVG renderer)."""

    def __init__(self, dom: str):
        super().__init__()
        self.views: list[View] = []
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "div" and "vega-embed" in classes:
            self.views.append(View(a.get("id", "")))
        elif not self.views:
            return
        elif tag == "svg":
            self.views[-1].svgs += 1
        elif tag == "g" and "role-mark" in classes:
            self.views[-1].marks += 1
        elif tag == "path" and a.get("aria-roledescription") == "line mark" and a.get("d"):
            label = dict(part.split(": ", 1) for part in (a.get("aria-label") or "").split("; ") if ": " in part)
            self.views[-1].lines.append({"label": label, "points": len(re.findall(r"[ML]", a["d"]))})


def draws(view: View, revision: str, s: Series) -> bool:
    """A line of `s` at `revision` is in the view: its first value, point count and revision match."""
    return any(line["points"] == s.rows and line["label"].get("rev") == revision
               and str(s.first) in {v.replace(",", "") for v in line["label"].values()} for line in view.lines)


def check_page(browser: str, page: Path, tmp_path: Path, definitions: list[Definition], revisions: list[str]) -> None:
    html = page.read_text(encoding="utf-8")
    assert "cdn.jsdelivr.net" not in html and not re.search(r"<script[^>]*\ssrc=", html)
    assert sorted(p.name for p in page.parent.iterdir()) == ["index.html"], "the page must be self-contained"
    views = Views(rendered_dom(browser, page, tmp_path)).views
    assert len(views) == len(definitions), (
        f"{len(views)} plot views drawn, dvc.yaml defines {len(definitions)}: {[v.id for v in views]}")
    for d in definitions:
        holding = [v for v in views if all(draws(v, r, s) for r in revisions for s in d.series[r])]
        if d.template in CURVE_TEMPLATES:
            assert len(holding) == 1, (
                f"plot {d.name!r}: no view draws a line per file, field and revision {revisions}; views: "
                + "; ".join(f"{v.id}: {[(ln['label'], ln['points']) for ln in v.lines]}" for v in views))
    for v in views:
        assert v.svgs >= 1 and v.marks >= 1, f"view {v.id} drew nothing"


def test_plots_show_renders_offline(browser, plots_repo, tmp_path):
    repo, env, definitions = plots_repo
    out = sh(["dvc", "plots", "show"], repo, env)
    page = repo / "dvc_plots" / "index.html"
    assert page.as_uri() in out
    check_page(browser, page, tmp_path, definitions, ["workspace"])


def test_plots_diff_renders_offline(browser, plots_repo, tmp_path):
    repo, env, definitions = plots_repo
    sh(["dvc", "plots", "diff", "-o", "diff_plots"], repo, env)  # workspace against HEAD
    check_page(browser, repo / "diff_plots" / "index.html", tmp_path, definitions, ["workspace", "HEAD"])


def test_stock_cdn_page_draws_nothing_offline(browser, plots_repo, tmp_path):
    """The control: without plots.html_template DVC's page loads vega from a CDN and stays blank."""
    repo, env, definitions = plots_repo
    sh(["dvc", "config", "--unset", "plots.html_template"], repo, env)
    sh(["dvc", "plots", "show", "-o", "stock"], repo, env)
    page = repo / "stock" / "index.html"
    assert "cdn.jsdelivr.net/npm/vega@" in page.read_text(encoding="utf-8")
    dom = rendered_dom(browser, page, tmp_path)
    assert dom.count("<div id") == len(definitions)  # DVC wrote one plot div each ...
    assert Views(dom).views == [] and "<svg" not in dom and "<canvas" not in dom  # ... and none was drawn


def test_pass_at_1_band_is_drawn_per_strategy_and_benchmark(browser, tmp_path):
    """The custom template of the Pass@1 plot, on data shaped as stages/plot writes it: each
    benchmark a panel, each strategy a line with its 95% interval as a filled band."""
    repo = tmp_path / "repo"
    for name in ["dvc.yaml", "params.yaml", ".dvc/config", ".dvc/.gitignore", ".dvcignore"]:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, repo / name)
    shutil.copytree(TEMPLATE_DIR, repo / TEMPLATE_DIR.name, ignore=shutil.ignore_patterns("__pycache__"))
    rows = [[b, s, step, round(0.1 + 0.01 * step + (0.05 if s == "deep" else 0), 3)]
            for b in ("livecodebench", "humaneval") for s in ("deep", "diverse") for step in (0, 3, 6)]
    write_table(repo / "plots/pass_at_1.csv", ["benchmark", "strategy", "step", "pass_at_1", "ci95_low", "ci95_high"],
                [[*r, round(r[3] - 0.05, 3), round(r[3] + 0.05, 3)] for r in rows])
    env = os.environ | {"PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
                        "DVC_NO_ANALYTICS": "1"}
    sh(["git", "init", "-q"], repo, env)
    sh(["dvc", "plots", "show", "plots/pass_at_1.csv", "-y", "pass_at_1", "-x", "step", "--template",
        "dvc_plots_template/strategy_band.json"], repo, env)
    dom = rendered_dom(browser, repo / "dvc_plots" / "index.html", tmp_path)
    areas = re.findall(r'aria-roledescription="area mark"[^>]*\sd="M', dom)
    lines = [ln for v in Views(dom).views for ln in v.lines if ln["points"] == 3]
    assert len(areas) == 4, f"{len(areas)} bands: one per strategy in each of 2 benchmark panels"
    assert len(lines) == 4 and {ln["label"].get("strategy") for ln in lines} == {"deep", "diverse"}, lines
