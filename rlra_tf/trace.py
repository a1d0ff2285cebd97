"""The record of a forward pass that the learning rules read (docs/ALGORITHM.md#forward-trace).

The models build it (`AlignedModel.trace`, each block's `trace`), the rules read it; it lives
apart from both so that neither imports the other for it.
"""

import dataclasses
from typing import Any, List, Optional


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
            through that normalisation needs.
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
class TransitionTrace:
    """One transition's part of a forward pass (a flatten, a pooling, a padding, a dropout).

    Attributes:
        layer: the `Transition` layer.
        inputs, outputs: what it took and gave.
        state: what its transpose needs beyond those (a dropout's mask), or `None`.
    """

    layer: Any
    inputs: Any
    outputs: Any
    state: Any = None


@dataclasses.dataclass
class BlockTrace:
    """One block's part of a forward pass: its input and its units, output unit last.

    `transitions[i]` holds the transitions run between the previous unit (or the block input)
    and unit `i`, in forward order; `transitions[len(units)]` those after the output unit. `None`
    means the block has none. `outputs` is the block's output: the output unit's activity after
    the transitions that follow it.
    """

    block: Any
    inputs: Any
    units: List[UnitTrace]
    transitions: Optional[List[List[TransitionTrace]]] = None

    def transitions_before(self, i):
        """The transitions in front of unit `i` (`i = len(units)`: after the output unit)."""
        return [] if self.transitions is None else self.transitions[i]

    @property
    def outputs(self):
        after = self.transitions_before(len(self.units))
        return after[-1].outputs if after else self.units[-1].outputs


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
