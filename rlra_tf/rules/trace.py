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
        linear: the linear response `A_u(z_{u-1})` (bias included) before the unit's own
            normalisation, when it has one (`None` otherwise): what carrying an error back
            through that normalisation needs (ALGORITHM.md 3.5a).
        residual: the residual input the unit adds: the block input, as it is (identity
            shortcut) or projected inside the unit (`None` without a residual input).
        shortcut_linear: the projection's linear response before its normalisation, when it
            has one.
    """

    unit: Any
    inputs: Any
    pre: Any
    outputs: Any
    linear: Any = None
    residual: Any = None
    shortcut_linear: Any = None


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
