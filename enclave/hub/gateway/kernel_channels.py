"""What may cross a kernel's websocket: every Jupyter message, in both directions, inspected.

The gateway decodes every frame into a message and sends on only what it decoded and checked,
re-encoded. Towards the browser it speaks the protocol JupyterLab asks for
(``v1.kernel.websocket.jupyter.org``: binary frames of little-endian 64-bit offsets, the channel,
then the header, parent header, metadata, content and buffers as separate JSON parts) or the
legacy one; towards the server always the legacy one (it offers no subprotocol): a text frame is
one JSON message with its ``channel``, a binary frame a message with buffers (``nbufs`` and
offsets as big-endian 32-bit integers, the JSON, then the buffers).

Out of the kernel (to the browser), every message type counts, not only ``stream``: each
message is capped at ``max_output_cell_kb`` (outputs replaced by a note, replies stripped of
their data, other messages dropped), and all of them together may send at most
``max_output_cell_kb`` per second averaged over a 3-second window; over that budget, data-
bearing parts are replaced by a note until the window has passed. Into the kernel, code,
widget messages and input replies are size-capped and scanned for identifiers with the output
checker's scanner; a refused ``execute_request`` is answered by the gateway itself (an error
and an ``execute_reply``) so the notebook does not wait for ever.
"""

from __future__ import annotations

import collections
import itertools
import json
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RATE_WINDOW_SECONDS = 3.0
# Output-bearing message types: over a cap their data is replaced by a note (the cell shows it).
OUTPUT_TYPES = frozenset({"stream", "execute_result", "display_data", "update_display_data", "error"})
# Messages from the browser whose text is scanned for identifiers (the rest is only capped:
# completion and inspection requests repeat the cell's code at every keystroke).
SCANNED_INBOUND = frozenset({"execute_request", "comm_open", "comm_msg", "input_reply", "debug_request"})
CODE_REQUESTS = frozenset({"complete_request", "inspect_request", "is_complete_request"})
_MAX_CONTROL_BYTES = 64 * 1024  # any other message from the browser (kernel_info, shutdown...)


class MalformedMessage(ValueError):
    """A websocket frame that is not a Jupyter message of the legacy protocol."""


def decode_frame(frame: str | bytes) -> dict[str, Any]:
    """One websocket frame → a message dict with ``channel`` and ``buffers``.

    Raises
    ------
    MalformedMessage
        Not JSON, not an object, offsets out of range.
    """
    try:
        if isinstance(frame, str):
            msg = json.loads(frame)
            buffers: list[bytes] = []
        else:
            if len(frame) < 4:
                raise MalformedMessage("binary frame shorter than its header")
            (nbufs,) = struct.unpack("!I", frame[:4])
            if nbufs < 1 or 4 * (nbufs + 1) > len(frame):
                raise MalformedMessage(f"binary frame names {nbufs} parts")
            offsets = list(struct.unpack("!" + "I" * nbufs, frame[4 : 4 * (nbufs + 1)]))
            if offsets != sorted(offsets) or offsets[0] < 4 * (nbufs + 1) or offsets[-1] > len(frame):
                raise MalformedMessage("binary frame offsets out of order or out of range")
            parts = [frame[a:b] for a, b in zip(offsets, [*offsets[1:], len(frame)], strict=True)]
            msg = json.loads(parts[0].decode("utf-8"))
            buffers = parts[1:]
    except (ValueError, UnicodeDecodeError, struct.error) as exc:
        raise MalformedMessage(f"not a Jupyter message: {exc}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("header"), dict):
        raise MalformedMessage("a Jupyter message is an object with a header")
    msg.setdefault("parent_header", {})
    msg.setdefault("metadata", {})
    msg.setdefault("content", {})
    msg["buffers"] = buffers
    return msg


def encode_frame(msg: dict[str, Any]) -> str | bytes:
    """A message dict → the websocket frame of the legacy protocol (binary when it has buffers)."""
    body = {k: v for k, v in msg.items() if k != "buffers"}
    buffers = [bytes(b) for b in msg.get("buffers") or []]
    text = json.dumps(body, ensure_ascii=False, default=str)
    if not buffers:
        return text
    parts = [text.encode("utf-8"), *buffers]
    nbufs = len(parts)
    offsets = [4 * (nbufs + 1)]
    for part in parts[:-1]:
        offsets.append(offsets[-1] + len(part))
    return struct.pack("!" + "I" * (nbufs + 1), nbufs, *offsets) + b"".join(parts)


V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
_V1_PARTS = ("header", "parent_header", "metadata", "content")


def decode_v1(frame: str | bytes) -> dict[str, Any]:
    """One frame of the v1 protocol → a message dict with ``channel`` and ``buffers``.

    Raises
    ------
    MalformedMessage
        A text frame, offsets out of range, parts that are not JSON objects.
    """
    if isinstance(frame, str) or len(frame) < 8:
        raise MalformedMessage("a v1 message is a binary frame")
    count = int.from_bytes(frame[:8], "little")
    if count < 2 + len(_V1_PARTS) or 8 * (count + 1) > len(frame):
        raise MalformedMessage(f"v1 frame names {count} offsets")
    offsets = [int.from_bytes(frame[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(count)]
    if offsets != sorted(offsets) or offsets[0] != 8 * (count + 1) or offsets[-1] > len(frame):
        raise MalformedMessage("v1 frame offsets out of order or out of range")
    parts = [frame[a:b] for a, b in itertools.pairwise(offsets)]
    try:
        msg: dict[str, Any] = {"channel": parts[0].decode("utf-8")}
        for name, raw in zip(_V1_PARTS, parts[1:5], strict=True):
            msg[name] = json.loads(raw.decode("utf-8")) if raw else {}
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedMessage(f"not a Jupyter message: {exc}") from None
    if not all(isinstance(msg[name], dict) for name in _V1_PARTS) or not msg["header"]:
        raise MalformedMessage("a Jupyter message is an object with a header")
    msg["buffers"] = parts[5:]
    return msg


def encode_v1(msg: dict[str, Any]) -> bytes:
    """A message dict → one binary frame of the v1 protocol."""
    parts = [str(msg.get("channel", "shell")).encode("utf-8")]
    parts += [json.dumps(msg.get(name) or {}, ensure_ascii=False, default=str).encode("utf-8") for name in _V1_PARTS]
    parts += [bytes(b) for b in msg.get("buffers") or []]
    count = len(parts) + 1
    offsets = [8 * (count + 1)]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    return count.to_bytes(8, "little") + b"".join(o.to_bytes(8, "little") for o in offsets) + b"".join(parts)


def message_size(msg: dict[str, Any]) -> int:
    """Bytes a message puts on the wire (JSON of its parts plus its buffers)."""
    body = {k: msg.get(k) for k in ("header", "parent_header", "metadata", "content")}
    return len(json.dumps(body, ensure_ascii=False, default=str).encode("utf-8")) + sum(
        len(b) for b in msg.get("buffers") or []
    )


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8"))


def _texts(value: Any) -> list[str]:
    """Every string inside a JSON value (keys included), for the identifier scan."""
    out: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            out.extend(str(k) for k in item)
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return out


@dataclass(frozen=True)
class Refusal:
    """An inbound message that is not forwarded, and what the browser gets instead."""

    reason: str
    replies: list[dict[str, Any]]


@dataclass
class KernelTrafficGuard:
    """The inspection of one kernel websocket connection (state: the output-rate window).

    Parameters
    ----------
    max_output_kb : int
        Largest message from the kernel (KiB), and the output rate (KiB per second).
    max_input_kb : int
        Largest code, widget message or input reply from the browser (KiB).
    find_identifiers : callable
        ``text -> list of identifier kinds found`` (the output checker's scanner); blocking,
        the caller runs :meth:`inbound` off the event loop.
    clock : callable
        Monotonic seconds (tests pass their own).
    """

    max_output_kb: int
    max_input_kb: int
    find_identifiers: Callable[[str], list[str]]
    clock: Callable[[], float] = time.monotonic
    _sent: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)
    _noted_parents: set[str] = field(default_factory=set)
    refused: int = 0
    capped: int = 0

    # ---------------------------------------------------------------- kernel → browser

    def _budget_left(self, now: float) -> int:
        while self._sent and now - self._sent[0][0] > RATE_WINDOW_SECONDS:
            self._sent.popleft()
        budget = int(self.max_output_kb * 1024 * RATE_WINDOW_SECONDS)
        return budget - sum(size for _t, size in self._sent)

    def outbound(self, msg: dict[str, Any]) -> list[dict[str, Any]]:
        """The message(s) to send to the browser in place of ``msg`` (maybe none)."""
        now = self.clock()
        left = self._budget_left(now)
        cap = self.max_output_kb * 1024
        over_rate = left <= 0
        if not over_rate:
            self._noted_parents.clear()
        limit = 0 if over_rate else min(cap, left)
        out = self._capped(msg, limit, over_rate)
        for item in out:
            self._sent.append((now, message_size(item)))
        return out

    def _note(self, limit: int, over_rate: bool, size: int) -> str:
        if over_rate:
            return (
                f"[output held back by the enclave: more than {self.max_output_kb} KiB per second left "
                "the kernel; summarise before displaying (policies/quotas.yaml max_output_cell_kb)]\n"
            )
        return (
            f"[output removed by the enclave: {size // 1024} KiB exceeds the {self.max_output_kb} KiB "
            "limit per output (policies/quotas.yaml max_output_cell_kb); summarise before displaying]\n"
        )

    def _capped(self, msg: dict[str, Any], limit: int, over_rate: bool) -> list[dict[str, Any]]:
        size = message_size(msg)
        kind = msg["header"].get("msg_type", "")
        if size <= limit:
            return [msg]
        self.capped += 1
        content = msg.get("content") or {}
        note = self._note(limit, over_rate, size)
        if kind in OUTPUT_TYPES:
            parent = str((msg.get("parent_header") or {}).get("msg_id", ""))
            if over_rate and parent in self._noted_parents:
                return []  # one note per cell and window is enough
            if over_rate:
                self._noted_parents.add(parent)
            if kind == "stream":
                new_content = {"name": "stderr", "text": note}
            elif kind == "error":
                new_content = {
                    "ename": str(content.get("ename", "Error"))[:200],
                    "evalue": str(content.get("evalue", ""))[:1000],
                    "traceback": [note],
                }
            else:
                new_content = {
                    **{k: content[k] for k in ("execution_count", "transient") if k in content},
                    "data": {"text/plain": note},
                    "metadata": {},
                }
            return [{**msg, "content": new_content, "metadata": {}, "buffers": []}]
        if kind == "execute_reply":
            stripped = {k: v for k, v in content.items() if k not in ("user_expressions", "payload")}
            expressions = content.get("user_expressions") or {}
            stripped["user_expressions"] = {
                name: {"status": "error", "ename": "EnclaveOutputLimit", "evalue": note, "traceback": []}
                for name in expressions
            }
            stripped["payload"] = []
            return [{**msg, "content": stripped, "metadata": {}, "buffers": []}]
        if kind == "inspect_reply":
            return [{**msg, "content": {"status": "ok", "found": True, "data": {"text/plain": note}, "metadata": {}}}]
        if kind.endswith("_reply"):
            # Completion, history, debugger replies: the data part goes, the reply stays so the
            # front end does not wait for it.
            return [{**msg, "content": {"status": "error", "ename": "EnclaveOutputLimit", "evalue": note,
                                        "traceback": []}, "metadata": {}, "buffers": []}]
        if kind == "status":
            return [msg]  # tiny, and the front end needs every busy/idle
        # Widget state (comm_open / comm_msg), debugger events, anything else: dropped.
        return []

    # ---------------------------------------------------------------- browser → kernel

    def inbound(self, msg: dict[str, Any]) -> Refusal | None:
        """None to forward ``msg`` to the kernel; a :class:`Refusal` otherwise (blocking: scans)."""
        kind = msg["header"].get("msg_type", "")
        size = message_size(msg)
        carries_code = kind in SCANNED_INBOUND or kind in CODE_REQUESTS
        limit = self.max_input_kb * 1024 if carries_code else _MAX_CONTROL_BYTES
        if size > limit:
            return self._refuse(
                msg,
                f"{kind} of {size // 1024} KiB exceeds the {limit // 1024} KiB the enclave takes in "
                "(policies/workspace.yaml max_upload_kb); bring data in through the custodian",
            )
        if kind in SCANNED_INBOUND:
            text = "\n".join(_texts(msg.get("content")))
            for buffer in msg.get("buffers") or []:
                text += "\n" + bytes(buffer).decode("utf-8", errors="replace")
            kinds = self.find_identifiers(text)
            if kinds:
                return self._refuse(
                    msg,
                    f"{kind} holds what looks like identifiers ({', '.join(sorted(set(kinds)))}); "
                    "re-identifiable data may not be brought into the enclave",
                )
        return None

    def _refuse(self, msg: dict[str, Any], reason: str) -> Refusal:
        self.refused += 1
        header = msg["header"]
        kind = header.get("msg_type", "")
        channel = msg.get("channel", "shell")
        text = f"EnclaveRefused: {reason}\n"
        replies = [
            _reply(header, "iopub", "status", {"execution_state": "busy"}),
            _reply(header, "iopub", "stream", {"name": "stderr", "text": text}),
        ]
        if kind.endswith("_request"):
            content: dict[str, Any] = {"status": "error", "ename": "EnclaveRefused", "evalue": reason, "traceback": []}
            if kind == "execute_request":
                content["execution_count"] = None
            replies.append(_reply(header, channel, kind[: -len("_request")] + "_reply", content))
        replies.append(_reply(header, "iopub", "status", {"execution_state": "idle"}))
        return Refusal(reason, replies)


def _reply(parent: dict[str, Any], channel: str, msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
    """A message the gateway sends in the kernel's name, answering ``parent``."""
    msg_id = uuid.uuid4().hex
    return {
        "channel": channel,
        # The legacy protocol repeats these at the top level (jupyter-server's own messages do).
        "msg_id": msg_id,
        "msg_type": msg_type,
        "header": {
            "msg_id": msg_id,
            "msg_type": msg_type,
            "username": "enclave-gateway",
            "session": str(parent.get("session", "")),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
            "version": "5.3",
        },
        "parent_header": parent,
        "metadata": {},
        "content": content,
        "buffers": [],
    }
