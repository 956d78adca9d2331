"""A self-contained HTML trajectory viewer for a benchmark folder: turns, code, outputs, images."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any, Sequence

from pyvision_agents.results import latest_records, read_records, write_text_atomic

VIEWER_FILE = "viewer.html"

_CODE_RE = re.compile(r"(<code>.*?</code>)", re.DOTALL)

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #dde;padding:10px 18px;z-index:1}
header h1{font-size:17px;margin:0 0 6px}
label{margin-right:14px}
main{padding:12px 18px}
details.episode{background:#fff;border:1px solid #dde;border-radius:6px;margin:8px 0;padding:6px 10px}
details.episode>summary{cursor:pointer;font-weight:600}
.ok{color:#17803d}.bad{color:#b42318}
.turn{border-left:4px solid #ccd;margin:8px 0;padding:4px 10px}
.turn.assistant{border-color:#4a6cf7}.turn.observation{border-color:#f59e0b}.turn.user{border-color:#10b981}
.role{font-size:12px;text-transform:uppercase;color:#667;font-weight:700}
pre{white-space:pre-wrap;word-break:break-word;margin:4px 0;font:12.5px/1.4 ui-monospace,monospace}
pre.code{background:#0f172a;color:#e2e8f0;padding:8px;border-radius:4px}
pre.output{background:#fff8eb;padding:6px;border-radius:4px}
img.figure{max-width:min(100%,640px);border:1px solid #ccd;margin:4px 0;display:block}
.meta{color:#556;font-size:13px}
.error{color:#b42318}
"""

_SCRIPT = """
const controls = ['outcome', 'end_reason', 'agent', 'env'];
function apply() {
  const value = Object.fromEntries(controls.map(c => [c, document.getElementById(c).value]));
  let shown = 0;
  for (const ep of document.querySelectorAll('details.episode')) {
    const ok = (value.outcome === 'all' || ep.dataset.outcome === value.outcome)
      && (value.end_reason === 'all' || ep.dataset.endReason === value.end_reason)
      && (value.agent === 'all' || ep.dataset.agent === value.agent)
      && (value.env === 'all' || ep.dataset.env === value.env);
    ep.hidden = !ok;
    shown += ok;
  }
  document.getElementById('shown').textContent = shown;
}
function init() {
  const params = new URLSearchParams(location.hash.slice(1));
  for (const c of controls) {
    const select = document.getElementById(c);
    if (params.has(c)) select.value = params.get(c);
    select.addEventListener('change', apply);
  }
  apply();
  if (params.get('open') === 'all') {
    document.querySelectorAll('details.episode').forEach(d => { d.open = true; });
  }
}
window.addEventListener('load', () => {
  const images = [...document.images];
  document.body.dataset.imagesDecoded = images.filter(i => i.complete && i.naturalWidth > 0).length;
});
init();
"""


def write_viewer(out_dir: str | Path, path: str | Path | None = None) -> Path:
    """Write the viewer for the records in `out_dir` (default `out_dir/viewer.html`); return its path.

    The page shows each episode's last record and links the run's images (stored once, under
    `out_dir/images/`) by relative path: keep it next to that folder, or
    move the two together. Filters (outcome, end reason, agent, env) can also be preset in the
    URL fragment, e.g. `viewer.html#outcome=incorrect`; `open=all` expands every episode.
    """
    out_dir = Path(out_dir)
    records = latest_records(read_records(out_dir))
    target = Path(path) if path is not None else out_dir / VIEWER_FILE
    images = Path(os.path.relpath(out_dir.resolve(), target.resolve().parent))
    write_text_atomic(target, render_page(records, out_dir, images))
    return target


def render_page(records: Sequence[dict[str, Any]], out_dir: Path, images: Path = Path(".")) -> str:
    """The viewer's HTML for `records` of `out_dir`; `images` is the folder the records' image
    paths are relative to, as seen from where the page will be."""
    esc = html.escape
    reasons = sorted({r["end_reason"] for r in records})
    agents = list(dict.fromkeys(r["agent"] for r in records))
    envs = list(dict.fromkeys(r["env_id"] for r in records))
    correct = sum(bool(r["correct"]) for r in records)
    episodes = "\n".join(_episode(record, images) for record in records)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>pyvision-env trajectories: {esc(out_dir.name)}</title><style>{_STYLE}</style></head>
<body><header><h1>pyvision-env trajectories <span class="meta">{esc(str(out_dir))}</span></h1>
<div class="meta">{len(records)} episodes, {correct} correct; showing <span id="shown">{len(records)}</span></div>
{_select("outcome", "outcome", ["correct", "incorrect"])}
{_select("end_reason", "end reason", reasons)}
{_select("agent", "agent", agents)}
{_select("env", "env", envs)}
</header><main>
{episodes}
</main><script>{_SCRIPT}</script></body></html>
"""


def _select(control: str, label: str, values: Sequence[str]) -> str:
    options = "".join(f'<option value="{html.escape(v)}">{html.escape(v)}</option>' for v in values)
    return (f'<label>{label} <select id="{control}"><option value="all">all</option>'
            f"{options}</select></label>")


def _episode(record: dict[str, Any], images: Path) -> str:
    esc = html.escape
    outcome = "correct" if record["correct"] else "incorrect"
    mark = '<span class="ok">✓</span>' if record["correct"] else '<span class="bad">✗</span>'
    files = record.get("image_files", [])
    turns = "\n".join(_message(message, files, images) for message in record["transcript"])
    error = f'<p class="error">error: {esc(record["error"])}</p>' if record.get("error") else ""
    return f"""<details class="episode" data-outcome="{outcome}" data-end-reason="{esc(record['end_reason'])}"
 data-agent="{esc(record['agent'])}" data-env="{esc(record['env_id'])}">
<summary>{mark} {esc(record['env_id'])} · {esc(record['agent'])} · episode {record['episode']} ·
 {esc(record['end_reason'])} · {record['turns']} turns, {record['code_cells']} code cells</summary>
<p class="meta">task {esc(record['task_id'])} (seed {record['seed']}) · predicted
 <b>{esc(str(record['predicted']))}</b> · ground truth <b>{esc(record['ground_truth'])}</b> ·
 reward {record['reward']:.2f} · {record['visual_tokens']} visual tokens · {record['wall_time']:.2f} s</p>
{error}{turns}
</details>"""


def _message(message: dict[str, Any], files: Sequence[str], images: Path) -> str:
    role = message["role"]
    body = []
    for part in message["content"]:
        if part["type"] == "image":
            index = part["image"]
            if index < len(files):  # none when the run was made with --no-images
                source = html.escape((images / files[index]).as_posix())
                body.append(f'<img class="figure" alt="image {index}" src="{source}">')
        else:
            body.append(_text(part["text"], role))
    return (f'<div class="turn {html.escape(role)}"><div class="role">{html.escape(role)}</div>'
            f'{"".join(body)}</div>')


def _text(text: str, role: str) -> str:
    if role == "observation":
        return f'<pre class="output">{html.escape(text)}</pre>'
    if role != "assistant":
        return f'<pre class="text">{html.escape(text)}</pre>'
    pieces = []
    for piece in _CODE_RE.split(text):
        if not piece.strip():
            continue
        kind = "code" if piece.startswith("<code>") else "text"
        pieces.append(f'<pre class="{kind}">{html.escape(piece)}</pre>')
    return "".join(pieces)
