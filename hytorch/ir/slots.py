"""The roles of a compiled program's slots: the buffers of its state that Python reads and
writes through `ht_slot(state, i)`. The backend describes each slot it makes with one of these
(and the facts listed beside it); the call side (hytorch/torch_bridge.py, hytorch/native.py)
reads them back by the same names.

    >>> SlotRole.TENSOR == "tensor"
    True
"""
from enum import Enum


class SlotRole(str, Enum):
    """What a slot holds, and the facts its description carries besides `role`."""

    TENSOR = "tensor"                    # a tensor bound at the top level: sym, numel, dtype, shape
    FIRST_STEP = "first_step"            # a trainable variable's flag, set until its optimizer
                                         # steps: sym, tensor (torch's name of the parameter)
    OPTIMIZER_STATE = "optimizer_state"  # a buffer of torch's optimizer state: sym, tensor, numel, key
    OPTIMIZER_STEP = "optimizer_step"    # a parameter's step count: sym, tensor, key
    LOADER = "loader"                    # an ht_loader: sym, source, batch_size, input_shape,
                                         # target_shape, target_dtype (and MNIST's settings)
    RNG = "rng"                          # the splitmix64 state of dropout masks

    def __str__(self):
        return self.value
