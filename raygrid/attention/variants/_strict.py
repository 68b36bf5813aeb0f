"""The base of every variant's params model: unknown keys are errors, values are immutable."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictParams(BaseModel):
    """A grid typo (`nb_feature`) fails before any trial starts, naming the key."""

    model_config = ConfigDict(extra="forbid", frozen=True)
