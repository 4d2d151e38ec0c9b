"""What the API server sends back, read the same way by both transports (`rest`, `lite`):
watch streams (one JSON event per line, over any chunking) and error bodies.
Standard library only (V11)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from ovn_k8s.kube.errors import WatchError

Obj = dict[str, Any]


def watch_events(chunks: Iterable[bytes], path: str) -> Iterator[Obj]:
    """The events of a watch response body, whatever its chunk boundaries: dicts with a
    string "type" and a dict "object". WatchError on a line that is not such an event."""
    buf = b""
    for chunk in chunks:
        if b"\n" not in chunk:
            buf += chunk
            continue
        # One split per chunk: a chunk of many events is not copied once per event.
        lines = (buf + chunk).split(b"\n") if buf else chunk.split(b"\n")
        buf = lines.pop()
        for line in lines:
            if line and not line.isspace():
                yield _event(line, path)
    if buf and not buf.isspace():
        yield _event(buf, path)


def _event(line: bytes, path: str) -> Obj:
    try:
        # Decoded here: json.loads(bytes) would first guess the encoding (always UTF-8).
        event = json.loads(line.decode("utf-8", "surrogatepass"))
    except ValueError:
        raise WatchError(f"watch {path}: not JSON: {line[:200]!r}") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str) \
            or not isinstance(event.get("object"), dict):
        raise WatchError(f"watch {path}: not an event: {line[:200]!r}")
    return event


def error_payload(data: bytes) -> Any:
    """An error answer's body: the Status dict when it is JSON, else its text."""
    text = data.decode(errors="replace")
    if text.strip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text
