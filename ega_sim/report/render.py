"""The report's blocks (headings, paragraphs, tables, figures) and their rendering as Markdown
and as one self-contained HTML file: both come from one list of blocks, so they say the same."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    """A table cell: its main text and a smaller second line (per-seed values, notes)."""

    text: str
    detail: str = ""


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[Cell]]


@dataclass(frozen=True)
class FigureBlock:
    path: str  # relative to the report
    title: str
    caption: str
    png: bytes
    width: int | None = None  # CSS pixels in the HTML (a high-dpi PNG shown at its 1x size)


@dataclass(frozen=True)
class Details:
    """A block folded away under a one-line summary (per-seed values): <details> in both."""

    summary: str
    blocks: list  # of Block


Block = Heading | Paragraph | Table | FigureBlock | Details


def _markdown_cell(cell: Cell) -> str:
    text = cell.text.replace("|", "\\|")
    if cell.detail:
        text += "<br><sub>" + html.escape(cell.detail).replace("|", "\\|") + "</sub>"
    return text


def _markdown_table(block: Table) -> list[str]:
    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in block.header) + " |"]
    lines.append("|" + "|".join(" --- " for _ in block.header) + "|")
    lines += ["| " + " | ".join(_markdown_cell(c) for c in row) + " |" for row in block.rows]
    return [*lines, ""]


def _markdown_lines(blocks: list[Block]) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Table):
            lines += _markdown_table(block)
        elif isinstance(block, Details):
            summary = html.escape(block.summary)
            lines += [f"<details><summary>{summary}</summary>", ""]
            lines += [*_markdown_lines(block.blocks), "</details>", ""]
        else:
            lines += [f"![{block.title}]({block.path})", "", f"*{block.caption}*", ""]
    return lines


def render_markdown(blocks: list[Block]) -> str:
    """The report as Markdown (GitHub flavour); figures linked by relative path."""
    return "\n".join(_markdown_lines(blocks)).rstrip() + "\n"


def _inline_html(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
.table { overflow-x: auto; margin: 0.6em 0 1.4em; }
table { border-collapse: collapse; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; vertical-align: top;
         white-space: nowrap; line-height: 1.25; }
th { background: #f2f2f2; white-space: normal; }
td:first-child, th:first-child { text-align: left; }
td small { font-size: 0.78em; } small { color: #666; }
code { background: #f4f4f4; padding: 0 0.2em; }
details { margin: -0.8em 0 1.4em; } summary { cursor: pointer; color: #444; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; height: auto; }
figcaption { color: #444; font-size: 0.9em; }
"""


def _html_parts(blocks: list[Block]) -> list[str]:
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{_inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, Table):
            parts.append('<div class="table"><table><thead><tr>')
            parts += [f"<th>{_inline_html(h)}</th>" for h in block.header]
            parts.append("</tr></thead><tbody>")
            for row in block.rows:
                cells = []
                for cell in row:
                    detail = f"<br><small>{html.escape(cell.detail)}</small>" if cell.detail else ""
                    cells.append(f"<td>{_inline_html(cell.text)}{detail}</td>")
                parts.append("<tr>" + "".join(cells) + "</tr>")
            parts.append("</tbody></table></div>")
        elif isinstance(block, Details):
            parts.append(f"<details><summary>{_inline_html(block.summary)}</summary>")
            parts += _html_parts(block.blocks)
            parts.append("</details>")
        else:
            data = base64.b64encode(block.png).decode("ascii")
            width = f' width="{block.width}"' if block.width else ""
            parts.append(
                f'<figure><img alt="{html.escape(block.title)}"{width} '
                f'src="data:image/png;base64,{data}">'
                f"<figcaption>{_inline_html(block.caption)}</figcaption></figure>"
            )
    return parts


def render_html(blocks: list[Block], title: str) -> str:
    """The report as one HTML file: figures embedded as data URIs, no external resources."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        *_html_parts(blocks),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
