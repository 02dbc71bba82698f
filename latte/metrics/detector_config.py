"""What every detector config shares: built from the .json record of a converted file (unknown keys are errors)
and a width divisor (tiny test models keep the released module tree with every channel count divided)."""
from dataclasses import asdict


class DetectorConfig:
    """Mixin for the detectors' frozen dataclasses; they define `width_divisor`."""

    @classmethod
    def from_dict(cls, fields):
        unknown = sorted(set(fields) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**fields)

    def to_dict(self):
        return asdict(self)

    def width(self, channels):
        if channels % self.width_divisor:
            raise ValueError(f"width_divisor={self.width_divisor} does not divide {channels} channels")
        return channels // self.width_divisor
