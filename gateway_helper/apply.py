"""Apply the helper's flow set: one atomic `ovs-ofctl --bundle add-flows` call.

The bundle's first line deletes every flow carrying our cookie (`delete cookie=C/-1`), the rest
add the wanted flows. OVS applies a bundle as one transaction (all or nothing, in order), so:
- flows with any other cookie (the bridge's default NORMAL flow, anyone else's) survive;
- there is never a moment with half a flow set, or with none;
- a bad flow rejects the whole bundle and leaves the table as it was.
(Verified on OVS 3.1 with the default bridge protocols: style-and-architecture.md V12.)

Nothing is read back: the wanted set is recomputed from the inputs, so a restarted helper just
replaces whatever its predecessor left. `FlowApplier.replace` skips the call when the set equals
what this process last applied, unless forced (the periodic full resync, which repairs flows
changed behind our back).
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ovn_k8s.errors import HostError

LOG = logging.getLogger(__name__)

# (argv, stdin text, timeout) -> (exit status, stderr). Injectable for tests without OVS.
Runner = Callable[[Sequence[str], str, float], tuple[int, str]]


class FlowApplyError(HostError):
    """ovs-ofctl refused or failed the bundle; the bridge's flows are unchanged."""


def bundle_script(flows: Sequence[str], cookie: int) -> str:
    """The add-flows input that replaces exactly the flows carrying `cookie` with `flows`."""
    for spec in flows:
        if not spec.startswith(f"cookie={cookie:#x},"):
            raise ValueError(f"flow without our cookie {cookie:#x}: {spec}")
        if "\n" in spec:
            raise ValueError(f"flow spec spans lines: {spec!r}")
    return "".join([f"delete cookie={cookie:#x}/-1\n", *(f"add {spec}\n" for spec in flows)])


def run_ofctl(argv: Sequence[str], stdin: str, timeout: float) -> tuple[int, str]:
    try:
        proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        return 127, f"{argv[0]}: command not found"
    except subprocess.TimeoutExpired:
        return 124, f"no answer within {timeout:.0f}s"
    return proc.returncode, proc.stderr


@dataclass
class ApplyResult:
    applied: bool  # False: the set equals the last applied one and the call was skipped
    flows: int


class FlowApplier:
    def __init__(self, bridge: str, *, cookie: int, ofctl: str = "ovs-ofctl",
                 timeout: float = 30.0, runner: Runner = run_ofctl) -> None:
        self.bridge = bridge
        self.cookie = cookie
        self.ofctl = ofctl
        self.timeout = timeout
        self._run = runner
        self._applied: tuple[str, ...] | None = None

    @property
    def applied(self) -> tuple[str, ...] | None:
        """What this process last applied successfully (None: nothing yet, or unknown)."""
        return self._applied

    def replace(self, flows: Sequence[str], *, force: bool = False) -> ApplyResult:
        """Make our cookie's flows on the bridge exactly `flows`, in one bundle."""
        wanted = tuple(flows)
        if not force and wanted == self._applied:
            return ApplyResult(applied=False, flows=len(wanted))
        script = bundle_script(wanted, self.cookie)
        argv = [self.ofctl, "--bundle", "add-flows", self.bridge, "-"]
        status, stderr = self._run(argv, script, self.timeout)
        if status != 0:
            # The bundle was not applied, so the table is as before; but a failure often means
            # ovs-vswitchd went away, and a restarted one starts with an empty table: the next
            # call must apply even an unchanged set.
            self._applied = None
            # The switch's own complaint ("Error OFPBAC_...: the flow") says more than the
            # closing "ovs-ofctl: talking to ... (Protocol error)".
            lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
            errors = [ln for ln in lines if ln.startswith("Error ")]
            detail = (errors or lines or [f"exit status {status}"])[0 if errors else -1]
            raise FlowApplyError(f"ovs-ofctl could not replace the flows on {self.bridge}: "
                                 f"{detail}")
        self._applied = wanted
        return ApplyResult(applied=True, flows=len(wanted))
