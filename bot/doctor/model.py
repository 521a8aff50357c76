"""One doctor check's result, how it is printed, and the JSON report (SPEC §10).

A check either passes (``ok``), fails (the problem in ``detail`` and what to do in ``fix``), or is
skipped (``skipped``: it does not apply here, e.g. the block-time check on a devnet, or what it
needs already failed and is reported by that check). A skipped check counts as passed, so only
real problems decide the exit code, and each problem is named once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    skipped: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "skipped": self.skipped,
            "detail": self.detail,
            "fix": self.fix or None,
        }

    def line(self, name_width: int = 0) -> str:
        """``ok    providers  …`` / ``FAIL  database   … — fix: …`` / ``skip  block time …``."""
        status = "skip" if self.skipped else ("ok" if self.ok else "FAIL")
        text = f"{status:<5} {self.name:<{name_width}}  {self.detail}"
        if not self.ok and self.fix:
            text += f" — fix: {self.fix}"
        return text


def passed(name: str, detail: str) -> CheckResult:
    return CheckResult(name, True, detail)


def failed(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, False, detail, fix)


def skipped(name: str, detail: str) -> CheckResult:
    return CheckResult(name, True, detail, skipped=True)


def report(results: list[CheckResult]) -> dict[str, Any]:
    """The ``--json`` object: ``{"ok": bool, "checks": [...]}``; ok only when every check is."""
    return {"ok": all(r.ok for r in results), "checks": [r.as_json() for r in results]}


def lines(results: list[CheckResult]) -> list[str]:
    width = max((len(r.name) for r in results), default=0)
    return [r.line(width) for r in results]
