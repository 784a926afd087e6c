"""The JSON round trip of config dataclasses (stored in checkpoints, manifests and logs)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Self


class JsonConfig:
    """Mixin for a dataclass whose fields are JSON values: `to_json` / `from_json`."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, text: str) -> Self:
        return cls(**json.loads(text))
