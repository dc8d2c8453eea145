"""The opt-out registry: merging lists from every channel, status, withdrawals, spikes."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from enclave.cli import _app, _register
from enclave.config import Settings
from enclave.errors import InputError
from enclave.optout import import_list, opted_out_tokens, person_status, stats
from enclave.state.db import session_scope
from pipelines.synth import generate_source


@pytest.fixture(scope="module")
def lists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("optout-src")
    summary = generate_source(out, people=3000, years=[2023], seed=5, files=["H_NHI_ENROL"], optout_share=0.03)
    return out / "optout", summary.optout


def _import_all(settings: Settings, folder: Path) -> list:
    results = []
    for path in sorted(folder.glob("*.csv")):
        with session_scope(settings) as session:
            results.append(import_list(session, settings, path, actor="alice"))
    return results


def _expected_opted_out(folder: Path, on: date) -> set[str]:
    frame = pl.concat([pl.read_csv(p, infer_schema=False) for p in folder.glob("*.csv")])
    frame = frame.with_columns(pl.col("EFFECTIVE_DATE").str.to_date("%Y%m%d"))
    frame = frame.filter(pl.col("EFFECTIVE_DATE") <= on).unique()
    latest = frame.sort("ID", "EFFECTIVE_DATE", pl.col("ACTION") == "withdraw").group_by("ID").last()
    return set(latest.filter(pl.col("ACTION") == "optout").get_column("ID"))


def test_lists_merge_and_duplicates_are_stored_once(settings: Settings, lists) -> None:
    folder, _ = lists
    results = _import_all(settings, folder)
    assert all(not r.rejected for r in results)
    again = _import_all(settings, folder)
    assert sum(r.imported for r in again) == 0
    assert sum(r.duplicates for r in again) == sum(r.rows_read for r in again)
    on = date(2030, 1, 1)
    expected = _expected_opted_out(folder, on)
    with session_scope(settings) as session:
        assert len(opted_out_tokens(session, on)) == len(expected)
        someone = sorted(expected)[0]
        status = person_status(session, settings, someone, actor="alice", reason="citizen enquiry #17")
        assert status.opted_out


def test_withdrawal_and_effective_dates(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "counter.csv"
    path.write_text(
        "ID,EFFECTIVE_DATE,CHANNEL,ACTION\n"
        "A123456789,20240105,counter,optout\n"
        "A123456789,20240301,counter,withdraw\n"
        "A800000014,20240110,web,optout\n"
        "A123456788,20240110,web,optout\n"  # bad checksum
        "B123456780,2024-01-10,web,optout\n"  # bad date
        "C123456781,20240110,fax,optout\n"  # unknown channel
    )
    with session_scope(settings) as session:
        result = import_list(session, settings, path, actor="alice")
    assert result.imported == 3
    assert [r["line"] for r in result.rejected] == [5, 6, 7]
    assert "national ID" in result.rejected[0]["problem"]
    with session_scope(settings) as session:
        kw = {"actor": "alice", "reason": "test"}
        assert not person_status(session, settings, "A123456789", at=date(2024, 1, 4), **kw).opted_out
        assert person_status(session, settings, "A123456789", at=date(2024, 2, 1), **kw).opted_out
        assert not person_status(session, settings, "A123456789", at=date(2024, 3, 1), **kw).opted_out
        assert person_status(session, settings, "a800000014", at=date(2024, 3, 1), **kw).opted_out
        with pytest.raises(InputError, match="reason"):
            person_status(session, settings, "A123456789", actor="alice", reason=" ")


def test_registry_holds_tokens_only(settings: Settings, lists) -> None:
    folder, _ = lists
    _import_all(settings, folder)
    ids = set(pl.concat([pl.read_csv(p, infer_schema=False) for p in folder.glob("*.csv")]).get_column("ID"))
    blob = (settings.home / "state.db").read_bytes()
    wal = settings.home / "state.db-wal"
    if wal.exists():
        blob += wal.read_bytes()
    assert not any(i.encode() in blob for i in ids)


def test_spike_month_is_flagged(settings: Settings, lists) -> None:
    folder, summary = lists
    _import_all(settings, folder)
    with session_scope(settings) as session:
        result = stats(session, settings, at=date(2030, 1, 1))
    spike = str(summary["spike_month"])
    flagged = [s["month"].replace("-", "") for s in result.spikes]
    assert spike in flagged
    channels = {r["channel"] for r in result.by_channel_month}
    assert channels == {"counter", "web", "app", "agency"}


def test_cli_import_status_stats(settings: Settings, lists, monkeypatch) -> None:
    folder, _ = lists
    _register()
    runner = CliRunner()
    monkeypatch.setenv("ENCLAVE_USER", "alice")
    res = runner.invoke(_app.app, ["optout", "import", *map(str, sorted(folder.glob("*.csv"))), "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.output)) == 4
    res = runner.invoke(_app.app, ["optout", "stats", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["spikes"]
    res = runner.invoke(_app.app, ["optout", "status", "A123456789", "--reason", "enquiry", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["opted_out"] is False
    log = runner.invoke(_app.app, ["audit", "log", "--action", "optout.*", "--json"])
    actions = [r["action"] for r in json.loads(log.output)]
    assert actions.count("optout.import") == 4 and "optout.status" in actions
