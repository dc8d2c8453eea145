"""Fee notices rendered as HTML (jinja2) and PDF (reportlab, built-in CJK font).

Owns the printable form of a notice: the project, the applicant, every itemised line with
quantity, unit price and amount, the total, the due date and the payment status. The PDF uses
reportlab's built-in CID font ``MSung-Light`` so Traditional Chinese renders without any font
download.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from jinja2 import Environment, select_autoescape
from sqlalchemy.orm import Session

from enclave.billing import notices
from enclave.billing.fees import FeeLine
from enclave.errors import NotFound
from enclave.state.models import FeeNotice, Project

_CJK_FONT = "MSung-Light"

_TEMPLATE = Path(__file__).resolve().parent / "templates" / "fee_notice.html.j2"


@dataclass(frozen=True)
class RenderedNotice:
    html: Path
    pdf: Path


def _context(session: Session, number: str) -> tuple[FeeNotice, Project, list[FeeLine]]:
    notice = notices.get(session, number)
    project = session.get(Project, notice.project_id)
    if project is None:
        raise NotFound(f"fee notice {number} names a missing project")
    return notice, project, notices.lines_of(notice)


def render_html(session: Session, number: str) -> str:
    """The notice as a self-contained HTML page."""
    notice, project, lines = _context(session, number)
    env = Environment(autoescape=select_autoescape(default=True))
    template = env.from_string(_TEMPLATE.read_text(encoding="utf-8"))
    return template.render(n=notice, p=project, lines=lines)


def render_pdf(session: Session, number: str, target: Path) -> Path:
    """Write the notice as a PDF to ``target``."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    notice, project, lines = _context(session, number)
    if _CJK_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(_CJK_FONT))
    style = ParagraphStyle("cjk", fontName=_CJK_FONT, fontSize=10, leading=14)
    title = ParagraphStyle("cjk-title", parent=style, fontSize=16, leading=22)
    story = [
        Paragraph(f"繳費通知 Fee notice {notice.number}", title),
        Paragraph(f"計畫 Project: {project.code} — {_esc(project.title)}", style),
        Paragraph(f"申請人 Applicant: {project.applicant} ({_esc(project.institution)})", style),
        Paragraph(f"通知日 Issued: {notice.issued_on}　繳費期限 Due: {notice.due_on}　"
                  f"狀態 Status: {notice.status}", style),
        Spacer(1, 8),
    ]
    rows = [["項目 Item", "數量 Qty", "單價 Unit", "金額 Amount"]]
    rows += [[Paragraph(_esc(line.description), style), str(line.quantity),
              f"{line.unit_price:,}", f"{line.amount:,}"] for line in lines]
    rows.append(["合計 Total (NT$)", "", "", f"{notice.total:,}"])
    table = Table(rows, colWidths=[280, 60, 70, 80])
    table.setStyle(TableStyle([
        ("FONTNAME", (0, 0), (-1, -1), _CJK_FONT),
        ("GRID", (0, 0), (-1, -1), 0.5, colors.grey),
        ("ALIGN", (1, 1), (-1, -1), "RIGHT"),
    ]))
    story += [table, Spacer(1, 8),
              Paragraph("逾期未繳視同無效案件；繳費後除不可抗力因素外概不退費。"
                        "Unpaid by the due date: the application is void. No refund after "
                        "payment.", style)]
    target.parent.mkdir(parents=True, exist_ok=True)
    doc = SimpleDocTemplate(str(target), pagesize=A4, title=f"Fee notice {notice.number}")
    doc.build(story)
    return target


def render(session: Session, number: str, folder: Path) -> RenderedNotice:
    """Write ``<number>.html`` and ``<number>.pdf`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    html = folder / f"{number}.html"
    html.write_text(render_html(session, number), encoding="utf-8")
    pdf = render_pdf(session, number, folder / f"{number}.pdf")
    return RenderedNotice(html, pdf)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def issued_between(notice: FeeNotice, start: date, end: date) -> bool:
    return start <= notice.issued_on < end
