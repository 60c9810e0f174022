"""The docs site: `sherlock-instruct docs` builds it from a small copy of the project (static HTML fallback,
an executed notebook, and the Quarto path with a stand-in `quarto`), its links hold, and headless Chromium
loads every page (skipped when no Chromium is installed)."""
import json, os, shutil, stat, subprocess, sys
from pathlib import Path

import nbformat
import pytest

from sherlock_instruct.docs import (browser_check, build_docs, check_links, find_browser, mixed_import_cells,
                                    project_config, render_site, screenshot)
from sherlock_instruct.load import SherlockError

REPO = Path(__file__).resolve().parents[1]
SITE_URL = 'https://sherlock-instruct.github.io/sherlock_instruct'


def demo_notebook(path: Path):
    "A small chapter: a title, links to another chapter and into the published site, output, a plot, skipped cells."
    code = lambda s: nbformat.v4.new_code_cell(s)
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell('# Demo chapter\n\n> A chapter made by the test.'),
        nbformat.v4.new_markdown_cell(f'See [the command line](08_cli.ipynb#main) and [the main function]({SITE_URL}/cli.html#main).\n\n'
                                      '## Output'),
        code('print("hello from the demo")'),
        code('import matplotlib.pyplot as plt'),
        code('plt.plot([1, 2, 3]); plt.title("demo plot"); plt.show()'),
        code('#| slow\nraise RuntimeError("a slow cell must not run")'),
        code('#| eval: false\nraise RuntimeError("an eval: false cell must not run")'),
    ], metadata={'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}})
    nbformat.write(nb, str(path))


def make_project(d: Path, notebooks=('index.ipynb', '00_load.ipynb', '08_cli.ipynb'), demo=True) -> Path:
    "A copy of this project with a few notebooks (and nbs/_quarto.yml as the same relative symlink)."
    (d/'nbs').mkdir(parents=True)
    for f in ('settings.ini', '_quarto.yml'): shutil.copy(REPO/f, d/f)
    for f in [*notebooks, 'styles.css']: shutil.copy(REPO/'nbs'/f, d/'nbs'/f)
    (d/'nbs'/'_quarto.yml').symlink_to('../_quarto.yml')
    if demo: demo_notebook(d/'nbs'/'01_demo.ipynb')
    return d


def make_run(d: Path) -> Path:
    "A run folder with a report that refers to a figure."
    (d/'figures').mkdir(parents=True)
    shutil.copy(Path(__file__), d/'figures'/'not-an-image.txt')
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    plt.figure(figsize=(3, 2)); plt.bar(['base', 'domain', 'instruct'], [0.07, 0.12, 0.04]); plt.savefig(d/'figures'/'f1.png'); plt.close()
    (d/'report.html').write_text('<!DOCTYPE html><html><head><style>table.scores td{padding:4px}</style></head><body>'
                                 '<h1>Run report</h1><h2>Scores</h2><table class="scores"><tr><td>F1</td><td>0.1257</td></tr></table>'
                                 '<img src="figures/f1.png" alt="F1 by stage"></body></html>')
    return d


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "A site built without executing, with the report of a run: (info, out)."
    d = tmp_path_factory.mktemp('docs')
    proj, run = make_project(d/'proj'), make_run(d/'run')
    info = build_docs(d/'site', run=run, execute=False, renderer='html', project=proj, n_workers=0)
    return info, d/'site'


def test_static_site(site):
    info, out = site
    assert info['renderer'] == 'html' and info['executed'] is False
    assert [p['file'] for p in info['pages']] == ['index.html', 'load.html', 'demo.html', 'cli.html', 'report.html']
    assert [p['title'] for p in info['pages']][2:] == ['Demo chapter', 'The command line', 'Report of a run']
    assert json.loads((out/'docs-build.json').read_text())['pages'] == info['pages']
    cli = (out/'cli.html').read_text()
    assert '<h3 id="build_parser" class="anchored">build_parser</h3>' in cli      # API reference from show_doc
    for p in info['pages']: assert f'href="{p["file"]}"' in cli                      # the sidebar lists every page
    demo = (out/'demo.html').read_text()
    assert 'href="cli.html#main"' in demo                   # link to a notebook -> its page
    assert f'{SITE_URL}/cli.html' not in demo               # link into the published site -> the local page
    assert 'hello from the demo' in demo and 'cell-output' not in demo     # the code, without outputs (not executed)
    rep = (out/'report.html').read_text()
    assert '.run-report table.scores td' in rep and '0.1257' in rep and 'src="report_files/figures/f1.png"' in rep
    assert (out/'report_files'/'figures'/'f1.png').exists() and not (out/'report_files'/'figures'/'not-an-image.txt').exists()
    assert check_links(out) == []


def test_broken_links_are_found(site, tmp_path):
    _, out = site
    bad = tmp_path/'bad'
    shutil.copytree(out, bad)
    page = bad/'demo.html'
    page.write_text(page.read_text().replace('href="cli.html#main"', 'href="cli.html#no-such-anchor"')
                    .replace('href="report.html"', 'href="missing.html"', 1))
    problems = check_links(bad)
    assert 'demo.html: cli.html#no-such-anchor (no such anchor)' in problems
    assert 'demo.html: missing.html (no such file)' in problems


def test_executed_notebook(tmp_path):
    "Executing first gives the pages outputs (text and plots); slow and eval: false cells are skipped."
    proj = make_project(tmp_path/'proj', notebooks=('index.ipynb',))
    info = build_docs(tmp_path/'site', execute=True, renderer='html', project=proj)
    assert info['executed'] is True
    demo = (tmp_path/'site'/'demo.html').read_text()
    assert '<div class="cell-output cell-output-stdout"><pre><code>hello from the demo\n</code></pre></div>' in demo
    assert '<img src="data:image/png;base64,' in demo
    assert 'must not run' in demo and 'RuntimeError:' not in demo


def test_execution_error_names_the_notebook(tmp_path):
    proj = make_project(tmp_path/'proj', notebooks=('index.ipynb',))
    nb = nbformat.read(str(proj/'nbs'/'01_demo.ipynb'), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell('1/0'))
    nbformat.write(nb, str(proj/'nbs'/'01_demo.ipynb'))
    with pytest.raises(SherlockError, match=r'(?s)--no-execute.*ZeroDivisionError.*01_demo'):
        build_docs(tmp_path/'site', execute=True, renderer='html', project=proj)


def test_repo_notebooks_keep_imports_apart():
    "nbdev's docs processing runs every cell with an import: in this repo's notebooks those cells hold only imports."
    bad = mixed_import_cells(REPO/'nbs')
    assert not bad, 'move the imports of these cells into cells of their own:\n' + '\n'.join(bad)


def test_missing_inputs(tmp_path, site):
    _, out = site
    proj = make_project(tmp_path/'proj', notebooks=('index.ipynb',), demo=False)
    (tmp_path/'afile').write_text('x')
    with pytest.raises(SherlockError, match='is a file'): build_docs(tmp_path/'afile', project=proj)
    (tmp_path/'full').mkdir(); (tmp_path/'full'/'notes.txt').write_text('mine')
    with pytest.raises(SherlockError, match='pass --force'): build_docs(tmp_path/'full', project=proj)
    with pytest.raises(SherlockError, match='not a site built'): build_docs(tmp_path/'full', force=True, project=proj)
    assert (tmp_path/'full'/'notes.txt').exists()
    with pytest.raises(SherlockError, match='report.html not found'): build_docs(tmp_path/'s', run=tmp_path/'full', project=proj)
    with pytest.raises(SherlockError, match='no processed notebooks'): render_site(tmp_path/'nothing', tmp_path/'s', {})
    with pytest.raises(SherlockError, match='no settings.ini'): project_config(tmp_path/'full')
    with pytest.raises(SherlockError, match='unknown renderer'): build_docs(tmp_path/'s', renderer='pdf', project=proj)
    (proj/'nbs'/'index.ipynb').unlink()
    with pytest.raises(SherlockError, match='no notebooks'): build_docs(tmp_path/'s', execute=False, project=proj)
    with pytest.raises(SherlockError, match='index.html not found'): check_links(tmp_path/'full')


def test_quarto_path(tmp_path, monkeypatch):
    "With `quarto` on PATH the build runs nbdev's steps and `quarto render` in _proc (a stand-in quarto here)."
    proj, run = make_project(tmp_path/'proj', notebooks=('index.ipynb',)), make_run(tmp_path/'run')
    bin_ = tmp_path/'bin'; bin_.mkdir()
    fake = bin_/'quarto'
    fake.write_text('#!/bin/sh\n# stand-in for `quarto render --no-cache`: record the call and what it was given\n'
                    'mkdir -p _docs && echo "$@" > _docs/args.txt && ls > _docs/files.txt && cp sidebar.yml _quarto.yml _docs/ '
                    '&& echo "<html><body><h1>fake</h1></body></html>" > _docs/index.html\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv('PATH', f'{bin_}{os.pathsep}{os.environ["PATH"]}')
    info = build_docs(tmp_path/'site', run=run, execute=False, project=proj)
    out = tmp_path/'site'
    assert info['renderer'] == 'quarto' and (out/'args.txt').read_text().split() == ['render', '--no-cache']
    files = (out/'files.txt').read_text().split()
    assert {'index.ipynb', '01_demo.ipynb', 'nbdev.yml', 'sidebar.yml', 'styles.css', 'report.qmd', 'report_files'} <= set(files)
    assert (out/'_quarto.yml').read_text() == (REPO/'_quarto.yml').read_text()          # through the nbs/ symlink
    assert (out/'sidebar.yml').read_text().split() == ['website:', 'sidebar:', 'contents:', '-', 'index.ipynb',
                                                       '-', '01_demo.ipynb', '-', 'report.qmd']
    assert 'output-dir: _docs' in (proj/'nbs'/'nbdev.yml').read_text()                  # nbdev wrote its config
    assert [p['file'] for p in info['pages']] == ['index.html', 'demo.html', 'report.html']
    with pytest.raises(SherlockError, match='Quarto is not installed'):
        monkeypatch.setenv('PATH', '/usr/bin:/bin')
        build_docs(tmp_path/'site2', execute=False, renderer='quarto', project=proj)


def test_cli(tmp_path, site):
    "The command says which path it took; user errors are one line and exit code 2."
    proj = make_project(tmp_path/'proj')
    exe = shutil.which('sherlock-instruct') or str(Path(sys.executable).parent/'sherlock-instruct')
    env = {**os.environ, 'PATH': f'{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin'}   # no quarto
    r = subprocess.run([exe, 'docs', '--out', str(tmp_path/'site'), '--no-execute', '--check', '--screenshot', str(tmp_path/'i.png')],
                       cwd=proj, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'via static HTML' in r.stdout and 'notebooks executed: no' in r.stdout and '0 broken internal links' in r.stdout
    r = subprocess.run([exe, 'docs', '--out', str(tmp_path/'site')], cwd=proj, capture_output=True, text=True, env=env)
    assert r.returncode == 2 and r.stderr.startswith('error: ') and '--force' in r.stderr and 'Traceback' not in r.stderr


@pytest.mark.skipif(find_browser() is None, reason='no Chromium: `apt-get install chromium` for the browser check')
def test_in_chromium(site, tmp_path):
    "Every page loads in headless Chromium with a heading and no broken image; screenshots of the index and a chapter."
    _, out = site
    res = browser_check(out, tmp_path/'index.png')
    assert res['problems'] == [] and res['pages'] == 5
    assert (tmp_path/'index.png').read_bytes()[:4] == b'\x89PNG' and (tmp_path/'index.png').stat().st_size > 10_000
    bad = tmp_path/'bad'
    shutil.copytree(out, bad)
    (bad/'report.html').write_text((bad/'report.html').read_text().replace('report_files/figures/f1.png', 'nope.png'))
    for p in bad.glob('*.html'):
        if p.name != 'report.html': p.unlink()
    assert browser_check(bad)['problems'] == ['report.html: 1 image(s) failed to load']
    if os.environ.get('SHERLOCK_DOCS_SHOTS'):   # keep pictures for a person to look at
        dest = Path(os.environ['SHERLOCK_DOCS_SHOTS']); dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path/'index.png', dest/'index.png')
        screenshot(out/'report.html', dest/'report.png')
