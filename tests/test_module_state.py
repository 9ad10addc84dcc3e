"""The generated module's state (backend/module_state.hy) and the slot roles the backend and
the call side share (hytorch/ir/slots.py)."""
import hy  # noqa: F401
import torch

import hytorch
from hytorch.backend.module_state import ModuleState
from hytorch.backend.scope import CNames
from hytorch.ir.slots import SlotRole
from test_torch_bridge import step


def test_a_buffer_is_allocated_by_ht_new_and_freed_by_ht_delete():
    state = ModuleState(CNames())
    w = state.buffer("w", "float *", 24, "a weight")
    c = "\n".join(state.c_definitions("0x1ull"))
    new, delete = c.index("ht_new(void)"), c.index("ht_delete(ht_state *ht_s)")
    assert f"if (!({w} = ht_alloc(24))) goto fail;" in c[new:]
    assert f"ht_free({w});" in c[delete:new]
    assert "float * v_w; /* a weight */" in c


def test_slots_are_numbered_in_order_and_described_without_their_address():
    state = ModuleState(CNames())
    assert state.slot("ht_s->a", SlotRole.TENSOR, sym="a", numel=1) == 0
    assert state.slot("&ht_s->r", "rng") == 1
    assert state.slot_descriptions() == [{"role": SlotRole.TENSOR, "sym": "a", "numel": 1},
                                         {"role": SlotRole.RNG}]
    assert state.has_slot(SlotRole.RNG) and not state.has_slot(SlotRole.LOADER)
    c = "\n".join(state.c_definitions("0x1ull"))
    # a tensor's slot may be bound to a caller's memory; ht_slot gives the state's own
    assert "case 0: return ht_s->ht_owned[0] ? ht_s->ht_owned[0] : ht_s->a;" in c
    assert "case 1: return &ht_s->r;" in c
    assert "case 0: ht_s->a = p ? p : ht_s->ht_owned[0]; return 0;" in c   # ht_bind_slot
    assert "if (ht_s->ht_owned[0]) ht_s->a = ht_s->ht_owned[0];" in c      # ht_delete frees it


def test_the_arena_holds_its_tensors_aligned_and_its_workspaces():
    state = ModuleState(CNames())
    state.arena_tensor(4)
    state.arena_tensor(65)
    state.arena_workspace("(size_t)(n) * sizeof(float)")
    assert state.arena_size() == "192 + (size_t)(n) * sizeof(float) + 64"


def test_a_compiled_training_program_describes_its_slots_by_role():
    model = torch.nn.Linear(2, 3, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    compiled = hytorch.stage(step, model, optimizer, torch.ones(4, 2), torch.ones(4, 3))
    roles = [s["role"] for s in compiled.slots]
    assert all(isinstance(r, SlotRole) for r in roles)
    assert sorted(roles) == sorted([SlotRole.TENSOR, SlotRole.FIRST_STEP, SlotRole.OPTIMIZER_STATE])
