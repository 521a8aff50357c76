"""What every benchmark receives from ``python -m bench``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Context:
    quick: bool  # small sizes: a smoke run, figures meaningless
    runs: int  # median of this many runs where a benchmark repeats
    cache: Path  # built chains (anvil --dump-state files), kept between runs
    work: Path  # a scratch folder, deleted afterwards
    install: bool = True  # may create side venvs with pip (faster-eth-abi): not in tests

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full
