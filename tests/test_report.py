"""`hpcq report`: a self-contained HTML page whose every image loads in headless Chromium, plus Markdown."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess

import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from hpcq.cli import app
from hpcq.report.crossover_report import run_crossover
from hpcq.report.study_report import build_report
from hpcq.results.aggregate import aggregate
from results_synthetic import write_bench_scale, write_study

CHROMIUM_INSTALL = "apt-get update && apt-get install -y chromium"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMG_SRC = re.compile(r'<img src="([^"]+)"')


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    write_study(root / "runs", seeds=(0, 1, 2))
    write_bench_scale(root / "runs")
    (root / "runs" / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    built = build_report(root / "runs", root / "report")
    return root, built


def test_html_is_self_contained_and_every_image_is_a_valid_png(study):
    _, built = study
    page = built.html.read_text()
    sources = IMG_SRC.findall(page)
    assert len(sources) == len(built.images) == 5  # main effects, accuracy, curves, scaling, energy
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        data = base64.b64decode(source.split(",", 1)[1])
        assert data.startswith(PNG_SIGNATURE)
        image = imread(io.BytesIO(data))
        assert min(image.shape[:2]) > 100 and image[..., :3].std() > 0.01
    assert not re.search(r'(src|href)="(https?:|//|file:)', page)
    assert "<script" not in page and "<link" not in page


def test_report_content_and_markdown(study):
    _, built = study
    page = built.html.read_text()
    for text in ("Model selection", "Quantum minus classical", "ANOVA", "Energy: GPU against QPU", "broken.h5"):
        assert text in page, text
    markdown = built.markdown.read_text()
    for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (built.markdown.parent / target).is_file(), target
    assert "| model_kind |" in markdown


def test_workflow_layout_reuses_aggregate_and_energy_outputs(tmp_path):
    """results/<study>/{runs,aggregate,energy} as the Snakemake rules write them."""
    study = tmp_path / "study"
    write_study(study / "runs", seeds=(0, 1))
    aggregate(study / "runs", study / "aggregate", progress=False)
    energy = run_crossover(None, study / "energy")
    result = CliRunner().invoke(app, ["report", str(study), "--out", str(study / "report")])
    assert result.exit_code == 0, result.output
    page = (study / "report" / "report.html").read_text()
    assert f"{energy.crossover:.0f} qubits" in page
    assert not (study / "report" / "energy").exists()  # the study's energy outputs were used, not recomputed


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip(f"headless Chromium is not installed; install it with: {CHROMIUM_INSTALL}")
    return binary


def _headless(binary: str, profile, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}", *arguments],
        capture_output=True, text=True, timeout=120)


def test_every_image_loads_in_headless_chromium(study, tmp_path):
    binary = _chromium()
    _, built = study
    # A copy with a probe script: the report itself carries no scripts.
    probe = ("<script>window.addEventListener('load',()=>{document.body.setAttribute('data-images',"
             "JSON.stringify([...document.images].map(i=>[i.alt,i.complete,i.naturalWidth,i.naturalHeight])));});"
             "</script></body>")
    probed = tmp_path / "probed.html"
    probed.write_text(built.html.read_text().replace("</body>", probe))
    done = _headless(binary, tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    found = re.search(r'data-images="([^"]*)"', done.stdout)
    assert found, f"Chromium produced no DOM (rc {done.returncode}): {done.stderr[-500:]}"
    images = json.loads(found.group(1).replace("&quot;", '"'))
    assert len(images) == len(built.images)
    assert all(complete and width > 0 and height > 0 for _, complete, width, height in images), images


def test_headless_screenshot_is_not_blank(study, tmp_path):
    binary = _chromium()
    _, built = study
    shot = tmp_path / "shot.png"
    _headless(binary, tmp_path / "profile", "--hide-scrollbars", "--window-size=1200,2400",
              f"--screenshot={shot}", built.html.as_uri())
    image = imread(shot)
    assert image.shape[:2] == (2400, 1200)
    assert image[..., :3].std() > 0.05


def test_energy_section_says_what_was_measured(study, tmp_path):
    """GPU runs that qualify: measured; CPU runs of small states: modelled, each run named with its reason."""
    _, built = study
    page = built.html.read_text()
    assert "Crossover (measured GPU side; QPU side assumed)" in page
    assert "Parameters: measured (from which runs) or assumed (from which source)" in page
    write_study(tmp_path / "runs", seeds=(0, 1))
    write_bench_scale(tmp_path / "runs", qubits=(10, 11, 12, 13, 14), device="cpu", method="estimate")
    cpu = build_report(tmp_path / "runs", tmp_path / "report").html.read_text()
    assert "Crossover (modelled: GPU side assumed" in cpu and "measured GPU side" not in cpu
    assert "bench_scale runs that cannot carry a parameter, and why" in cpu
    assert html.unescape(cpu).count("it ran on cpu; the model's GPU side takes only GPU runs") == 10
