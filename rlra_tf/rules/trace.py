"""The record of a forward pass that the learning rules read (ALGORITHM.md section 3.1)."""

import dataclasses
from typing import Any, List


@dataclasses.dataclass
class UnitTrace:
    """One unit's part of a forward pass.

    Attributes:
        unit: the `AlignedUnit` layer.
        inputs: `z_{u-1}` as the unit saw it.
        pre: the pre-activation `h_u` (normalisation and residual input included).
        outputs: the activity `z_u = phi_u(h_u)`.
    """

    unit: Any
    inputs: Any
    pre: Any
    outputs: Any


@dataclasses.dataclass
class BlockTrace:
    """One block's part of a forward pass: its input and its units, output unit last."""

    block: Any
    inputs: Any
    units: List[UnitTrace]

    @property
    def outputs(self):
        return self.units[-1].outputs


@dataclasses.dataclass
class Trace:
    """A whole forward pass: the blocks in order, the classifier head last."""

    inputs: Any
    blocks: List[BlockTrace]

    @property
    def logits(self):
        return self.blocks[-1].units[-1].pre

    @property
    def units(self):
        return [u for b in self.blocks for u in b.units]
