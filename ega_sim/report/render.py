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


Block = Heading | Paragraph | Table | FigureBlock


def _markdown_cell(cell: Cell) -> str:
    text = cell.text.replace("|", "\\|")
    if cell.detail:
        text += "<br><sub>" + html.escape(cell.detail).replace("|", "\\|") + "</sub>"
    return text


def render_markdown(blocks: list[Block]) -> str:
    """The report as Markdown (GitHub flavour); figures linked by relative path."""
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(h.replace("|", "\\|") for h in block.header) + " |")
            lines.append("|" + "|".join(" --- " for _ in block.header) + "|")
            lines += [
                "| " + " | ".join(_markdown_cell(c) for c in row) + " |" for row in block.rows
            ]
            lines.append("")
        else:
            lines += [f"![{block.title}]({block.path})", "", f"*{block.caption}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def _inline_html(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.55em; text-align: right; vertical-align: top; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
small { color: #666; } code { background: #f4f4f4; padding: 0 0.2em; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; }
figcaption { color: #444; font-size: 0.9em; }
"""


def render_html(blocks: list[Block], title: str) -> str:
    """The report as one HTML file: figures embedded as data URIs, no external resources."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{_inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, Table):
            parts.append("<table><thead><tr>")
            parts += [f"<th>{_inline_html(h)}</th>" for h in block.header]
            parts.append("</tr></thead><tbody>")
            for row in block.rows:
                cells = []
                for cell in row:
                    detail = f"<br><small>{html.escape(cell.detail)}</small>" if cell.detail else ""
                    cells.append(f"<td>{_inline_html(cell.text)}{detail}</td>")
                parts.append("<tr>" + "".join(cells) + "</tr>")
            parts.append("</tbody></table>")
        else:
            data = base64.b64encode(block.png).decode("ascii")
            parts.append(
                f'<figure><img alt="{html.escape(block.title)}" '
                f'src="data:image/png;base64,{data}">'
                f"<figcaption>{_inline_html(block.caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
