"""ipywidgets explorers that also render in the static book.

The explorer is a Tab of HTML panes built up front (no Python callbacks), so the widget state
embedded in the notebook is all a reader of the static HTML book needs.
"""

from __future__ import annotations

import html
from typing import Sequence

import ipywidgets as widgets

from .judge import gpt_ranks


def example_html(example: dict, metrics: Sequence[str]) -> str:
    """One example as HTML: instruction, input, reference, then candidates with scores and GPT-Rank."""
    ranks = gpt_ranks(example) if example.get("cmp_results") else {}
    esc = lambda text: html.escape(text).replace("\n", "<br>")  # noqa: E731
    header = [f"<p><b>{esc(example['id'])}</b> · {esc(', '.join(example.get('tags', [])))}</p>",
              f"<p><b>Instruction.</b> {esc(example['instruction'])}</p>"]
    if example.get("input"):
        header.append(f"<p><b>Input.</b> {esc(example['input'])}</p>")
    header.append(f"<p><b>Reference.</b> {esc(example['output'])}</p>")
    head = "".join(f"<th>{esc(m)}</th>" for m in metrics)
    rows = []
    for c in sorted(example["candidates"], key=lambda c: ranks.get(c["model"], 0)):
        cells = "".join(f"<td>{c['scores'][m]:.3f}</td>" for m in metrics)
        rank = ranks.get(c["model"], "–")
        rows.append(f"<tr><td>{rank}</td><td><b>{esc(c['model'])}</b><br>{esc(c['text'])}</td>{cells}</tr>")
    table = (f"<table style='font-size:90%'><tr><th>GPT-Rank</th><th>candidate</th>{head}</tr>"
             + "".join(rows) + "</table>")
    return "".join(header) + table


def example_explorer(examples: Sequence[dict], metrics: Sequence[str]) -> widgets.Tab:
    """A tab per example with its candidates, scores and GPT-Rank."""
    tab = widgets.Tab(children=[widgets.HTML(example_html(ex, metrics)) for ex in examples])
    for i, ex in enumerate(examples):
        tab.set_title(i, ex["id"])
    return tab
