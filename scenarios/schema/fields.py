"""Field types and the strict base model every scenario schema module shares."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
)

# Numbers are strict (a quoted "0.5" is an error, not a float); containers stay lax so YAML lists
# fill tuples.
Float = Annotated[float, Strict()]
Int = Annotated[int, Strict()]
PosFloat = Annotated[float, Strict(), Field(gt=0)]
NonNegFloat = Annotated[float, Strict(), Field(ge=0)]
Vec3 = tuple[Float, Float, Float]
Size3 = tuple[PosFloat, PosFloat, PosFloat]
Range = tuple[Float, Float]
Unit = Annotated[float, Strict(), Field(ge=0, le=1)]
RGBA = tuple[Unit, Unit, Unit, Unit]


class Strict_(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # a NaN pose or range crashed deep in the sim


def check_range(value: tuple[float, float], what: str = "range") -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"{what} must be [low, high] with low <= high, got {list(value)}")
    return value
