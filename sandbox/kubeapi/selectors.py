"""Label and field selectors, parsed the way the API server reads the query string.

Label selectors: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, `k>1`,
`k<1`, joined by commas (AND). Field selectors: `path=v`, `path==v`, `path!=v`, joined by
commas, over the field labels the kind supports. A parse error is a `ValueError`; the HTTP
layer turns it into 400 BadRequest, as the real server does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_SET_RE = re.compile(rf"^({_KEY})\s+(in|notin)\s*\((.*)\)$")
_CMP_RE = re.compile(rf"^({_KEY})\s*(==|!=|=|>|<)\s*(.*)$")
_EXISTS_RE = re.compile(rf"^(!?)\s*({_KEY})$")
_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True, slots=True)
class _LabelRequirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", ">", "<"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        # ">" / "<": both sides must be integers, like labels.Requirement.Matches.
        try:
            have, want = int(value or ""), int(self.values[0])
        except ValueError:
            return False
        return have > want if self.op == ">" else have < want


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ')' in selector {text!r}")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"unbalanced '(' in selector {text!r}")
    parts.append(text[start:])
    return parts


def _check_value(value: str, selector: str) -> str:
    if not _VALUE_RE.match(value):
        raise ValueError(f"invalid label value {value!r} in selector {selector!r}")
    return value


def parse_label_selector(selector: str | None) -> Predicate:
    """Predicate over an object (its metadata.labels) for a labelSelector query value."""
    if not selector or not selector.strip():
        return lambda obj: True
    reqs: list[_LabelRequirement] = []
    for raw in _split_top_level(selector):
        part = raw.strip()
        if not part:
            raise ValueError(f"empty requirement in label selector {selector!r}")
        if m := _SET_RE.match(part):
            values = tuple(_check_value(v.strip(), selector) for v in m.group(3).split(","))
            reqs.append(_LabelRequirement(m.group(1), m.group(2), values))
        elif m := _CMP_RE.match(part):
            op = "=" if m.group(2) == "==" else m.group(2)
            reqs.append(_LabelRequirement(m.group(1), op, (_check_value(m.group(3).strip(),
                                                                        selector),)))
        elif m := _EXISTS_RE.match(part):
            reqs.append(_LabelRequirement(m.group(2), "!" if m.group(1) else "exists"))
        else:
            raise ValueError(f"unable to parse requirement {part!r} in label selector")

    def match(obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r.matches(labels) for r in reqs)
    return match


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of a dotted field; missing fields read as "" (so `spec.nodeName=`
    selects unscheduled pods, as on a real server)."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return ""
        cur = cur[part]
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if cur is None:
        return ""
    return str(cur)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def parse_field_selector(selector: str | None, supported: Collection[str]) -> Predicate:
    """Predicate for a fieldSelector; a field the kind does not support is a ValueError."""
    if not selector or not selector.strip():
        return lambda obj: True
    reqs: list[tuple[str, bool, str]] = []  # (path, equal?, value)
    for raw in _split_unescaped(selector, ","):
        part = raw.strip()
        for op in ("!=", "==", "="):
            idx = part.find(op)
            if idx > 0:
                path, value = part[:idx].strip(), _unescape(part[idx + len(op):].strip())
                break
        else:
            raise ValueError(f"invalid field selector requirement {part!r}")
        if path not in supported:
            raise ValueError(f'field label not supported: "{path}"')
        reqs.append((path, op != "!=", value))

    def match(obj: Mapping[str, Any]) -> bool:
        return all((field_value(obj, path) == value) == equal for path, equal, value in reqs)
    return match
