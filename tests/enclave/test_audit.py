"""The audit chain detects every kind of tampering and names the first bad entry."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3

import pytest
from typer.testing import CliRunner

from enclave import audit
from enclave.cli import _app, _register
from enclave.config import Settings, load_settings
from enclave.state.db import session_scope


def _append(settings: Settings, n: int, actor: str = "system") -> None:
    with session_scope(settings) as session:
        for i in range(n):
            audit.record(
                session,
                settings,
                actor=actor,
                role="system",
                action="test.event",
                obj=f"object-{i}",
                details={"i": i},
            )


def _verify(settings: Settings) -> audit.VerifyResult:
    with session_scope(settings) as session:
        return audit.verify(session, settings)


def _db(settings: Settings) -> sqlite3.Connection:
    return sqlite3.connect(settings.home / "state.db", isolation_level=None)


def test_intact_chain_verifies(settings: Settings) -> None:
    _append(settings, 10)
    result = _verify(settings)
    assert result.ok, result.problem
    assert result.entries == 12  # init + first custodian + 10


def test_edit_is_named(settings: Settings) -> None:
    _append(settings, 10)
    with _db(settings) as con:
        con.execute("UPDATE audit_entries SET object='forged' WHERE seq=7")
    result = _verify(settings)
    assert not result.ok
    assert result.first_bad_seq == 7
    assert "edited" in result.problem


def test_deletion_is_named(settings: Settings) -> None:
    _append(settings, 10)
    with _db(settings) as con:
        con.execute("DELETE FROM audit_entries WHERE seq=5")
    result = _verify(settings)
    assert not result.ok
    assert result.first_bad_seq == 6


def test_insertion_is_named(settings: Settings) -> None:
    _append(settings, 5)
    with _db(settings) as con:
        # Make room after entry 3 and slip in a forged entry with a self-consistent hash.
        rows = con.execute("SELECT seq FROM audit_entries WHERE seq>3 ORDER BY seq DESC").fetchall()
        for (seq,) in rows:
            con.execute("UPDATE audit_entries SET seq=seq+1 WHERE seq=?", (seq,))
        prev = con.execute("SELECT entry_hash FROM audit_entries WHERE seq=3").fetchone()[0]
        fields = {
            "seq": 4,
            "ts": "2026-01-01T00:00:00.000000+08:00",
            "actor": "mallory",
            "role": "custodian",
            "action": "user.add",
            "object": "mallory",
            "project": None,
            "reason": None,
            "outcome": "ok",
            "details": "{}",
            "prev_hash": prev,
        }
        forged = audit.entry_hash(fields)
        # The forger re-links the displaced entry to the forged one (the unique prev_hash
        # constraint forbids two entries claiming the same predecessor).
        con.execute("UPDATE audit_entries SET prev_hash=? WHERE seq=5", (forged,))
        con.execute(
            "INSERT INTO audit_entries (seq, ts, actor, role, action, object, project, reason,"
            " outcome, details, prev_hash, entry_hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (*fields.values(), forged),
        )
    result = _verify(settings)
    assert not result.ok
    assert result.first_bad_seq == 5  # the original 4th entry no longer links to its predecessor


def test_reordering_is_named(settings: Settings) -> None:
    _append(settings, 6)
    with _db(settings) as con:
        con.execute("UPDATE audit_entries SET seq=-1 WHERE seq=4")
        con.execute("UPDATE audit_entries SET seq=4 WHERE seq=5")
        con.execute("UPDATE audit_entries SET seq=5 WHERE seq=-1")
    result = _verify(settings)
    assert not result.ok
    assert result.first_bad_seq == 4


def test_tail_truncation_is_caught_by_the_signed_anchor(settings: Settings) -> None:
    _append(settings, 6)
    with _db(settings) as con:
        last, prev_hash = con.execute(
            "SELECT seq, prev_hash FROM audit_entries ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        con.execute("DELETE FROM audit_entries WHERE seq=?", (last,))
        # Even a careful forger who also rewinds the head row is caught.
        con.execute("UPDATE audit_head SET seq=?, entry_hash=? WHERE id=1", (last - 1, prev_hash))
    result = _verify(settings)
    assert not result.ok
    assert result.first_bad_seq == last
    assert "removed from the end" in result.problem


def test_full_rewrite_is_caught_by_the_signed_anchor(settings: Settings) -> None:
    _append(settings, 4)
    with _db(settings) as con:
        rows = con.execute(
            "SELECT seq, ts, actor, role, action, object, project, reason, outcome, details "
            "FROM audit_entries ORDER BY seq"
        ).fetchall()
        prev = audit.GENESIS
        for row in rows:
            fields = dict(
                zip(
                    [
                        "seq",
                        "ts",
                        "actor",
                        "role",
                        "action",
                        "object",
                        "project",
                        "reason",
                        "outcome",
                        "details",
                    ],
                    row,
                    strict=True,
                )
            )
            if fields["seq"] == 2:
                fields["object"] = "forged"
            fields["prev_hash"] = prev
            digest = audit.entry_hash(fields)
            con.execute(
                "UPDATE audit_entries SET prev_hash=?, entry_hash=?, object=? WHERE seq=?",
                (prev, digest, fields["object"], fields["seq"]),
            )
            prev = digest
        con.execute("UPDATE audit_head SET entry_hash=? WHERE id=1", (prev,))
    result = _verify(settings)
    assert not result.ok
    assert "rewritten" in result.problem


def test_forged_anchor_signature_fails(settings: Settings) -> None:
    _append(settings, 2)
    path = audit.anchor_path(settings)
    anchor = json.loads(path.read_text())
    anchor["signature"] = "00" * 64
    path.write_text(json.dumps(anchor))
    result = _verify(settings)
    assert not result.ok
    assert "signature" in result.problem


def test_rolled_back_operation_leaves_no_entry(settings: Settings) -> None:
    before = _verify(settings).entries
    with pytest.raises(RuntimeError), session_scope(settings) as session:
        audit.record(session, settings, actor="system", role="system", action="test.partial")
        raise RuntimeError("the operation failed after auditing")
    assert _verify(settings).entries == before
    assert _verify(settings).ok


def _writer(home: str, n: int, tag: str) -> None:
    s = load_settings(home)
    for i in range(n):
        with session_scope(s) as session:
            audit.record(
                session, s, actor=tag, role="system", action="test.concurrent", obj=f"{tag}-{i}"
            )


def test_concurrent_writers_form_one_chain(settings: Settings) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(settings.home), 25, f"w{k}")) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    result = _verify(settings)
    assert result.ok, result.problem
    assert result.entries == 2 + 4 * 25


def test_cli_verify_and_log(settings: Settings) -> None:
    _register()
    runner = CliRunner()
    ok = runner.invoke(_app.app, ["audit", "verify", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["ok"] is True
    log = runner.invoke(_app.app, ["audit", "log", "--as", "alice", "--action", "user.*", "--json"])
    assert log.exit_code == 0, log.output
    rows = json.loads(log.output)
    assert [r["action"] for r in rows] == ["user.add"]
    with _db(settings) as con:
        con.execute("UPDATE audit_entries SET actor='eve' WHERE seq=2")
    bad = runner.invoke(_app.app, ["audit", "verify", "--json"])
    assert bad.exit_code == 5
    assert json.loads(bad.output)["first_bad_seq"] == 2
