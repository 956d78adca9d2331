"""The HTML trajectory viewer, rendered in a real headless browser (Debian's chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from pyvision_agents.bench import bench
from pyvision_agents.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def dump_dom(url: str, profile) -> str:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
               "--dump-dom", url]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=True).stdout


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    bench(["PyVisionImage-v0"], ["solver", "no-tool"], 3, out, progress=False, plots=False,
          viewer=False, env_kwargs={"difficulty": "easy"})
    return out


def image_sources(page):
    return re.findall(r'<img class="figure" alt="image \d+" src="([^"]+)"', page)


def test_view_command_links_each_stored_image_by_relative_path(run_dir, capsys):
    assert main(["view", str(run_dir)]) == 0
    page = (run_dir / "viewer.html").read_text()
    assert str(run_dir / "viewer.html") in capsys.readouterr().out
    assert page.count('class="episode"') == 6
    sources = image_sources(page)
    assert len(sources) >= 6 and "base64" not in page  # images are linked, not embedded again
    assert all(not s.startswith("/") and (run_dir / s).is_file() for s in sources)
    stored = {p.relative_to(run_dir).as_posix() for p in (run_dir / "images").iterdir()}
    assert set(sources) == stored  # every stored image shown, each file written once
    assert len(stored) < len(sources)  # the solver and the no-tool agent share each prompt image


def test_a_viewer_written_elsewhere_links_back_to_the_images(run_dir, tmp_path):
    target = tmp_path / "pages" / "v.html"
    target.parent.mkdir()
    assert main(["view", str(run_dir), "--output", str(target)]) == 0
    sources = image_sources(target.read_text())
    assert sources and all((target.parent / s).resolve().is_file() for s in sources)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_browser_renders_turns_images_and_filters(run_dir, tmp_path):
    main(["view", str(run_dir)])
    url = (run_dir / "viewer.html").as_uri()
    dom = dump_dom(url + "#open=all", tmp_path / "profile")
    assert dom.count('<details class="episode"') == 6 and dom.count(" open=") == 6
    # solver: prompt, code turn, interpreter output, answer; no-tool: prompt, answer
    assert dom.count('<div class="turn assistant">') == 3 * 2 + 3
    assert dom.count('<div class="turn observation">') == 3
    assert dom.count('<pre class="code">&lt;code&gt;') == 3
    assert "ANSWER:" in dom
    images = dom.count('<img class="figure"')
    assert images >= 6
    assert f'data-images-decoded="{images}"' in dom  # every linked image loaded and decoded
    filtered = dump_dom(url + "#outcome=correct&agent=solver", tmp_path / "profile")
    assert '<span id="shown">3</span>' in filtered
    assert filtered.count('<details class="episode" data-outcome="incorrect"') == \
        filtered.count('data-outcome="incorrect" data-end-reason="DONE" data-agent="no-tool" data-env="PyVisionImage-v0" hidden')
