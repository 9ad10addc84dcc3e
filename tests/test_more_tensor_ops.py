"""Issue 9's tensor operations, compiled with hytorch.stage and hytorch.TensorType arguments,
against PyTorch: `/` (by a tensor or a number), exp, log, clamp, float(), sum/mean over a dim,
broadcasting + - * /, t()/.T, matmul/@ (2-D, N-D @ 2-D, batched), cat/stack, int and slice
indexing; detach().

Each case is a function of tensors of drawn (ragged) shapes. `test_forward` compiles it with
TensorType arguments and compares its result with torch's; `test_gradients` makes its float
tensors parameters, compiles a training step of the loss (f(...) * aux).sum() and reads each
gradient off one SGD step with lr 1, against torch.autograd; `test_training` runs SGD with
momentum for a few steps on small models made of these ops, against eager PyTorch. All of
them run again under AddressSanitizer and UBSan (`test_the_ops_run_clean_under_sanitizers`).
"""
import os
import pathlib
import re
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings, strategies as st

import hytorch
from c_harness import BUILDS, KERNELS_CDEF, f32, garbage, load_runtime, ptr
from test_sanitizers import assert_no_report, sanitized_run_env  # noqa: F401  (a fixture)

RTOL, ATOL = 1e-4, 1e-5
SIZES = st.integers(1, 21)     # ragged: across the kernels' blocks of 16


def shape(draw, min_dims=1, max_dims=3):
    return tuple(draw(st.lists(SIZES, min_size=min_dims, max_size=max_dims)))


def broadcast_partner(draw, full):
    """A shape that broadcasts to `full`: some dims 1, maybe fewer leading dims."""
    kept = full[draw(st.integers(0, len(full) - 1)):]
    return tuple(1 if draw(st.booleans()) else n for n in kept)


def positive(x):
    return x * x + 0.5


def int_slices_example(draw):
    s = shape(draw)
    return [("int", s)], {"index": index_for(draw, s)}


def one(draw, min_dims=1, max_dims=3):
    return [shape(draw, min_dims, max_dims)], {}


def two(draw):
    return [shape(draw)] * 2, {}


def dim_of(draw):
    s = shape(draw)
    return [s], {"dim": draw(st.integers(-len(s), len(s) - 1)), "keepdim": draw(st.booleans())}


def broadcasting(draw):
    """A shape and one that broadcasts to it, in either order, and an operator."""
    s = shape(draw)
    pair = [s, broadcast_partner(draw, s)]
    return pair[::draw(st.sampled_from([1, -1]))], {"op": draw(st.sampled_from("+-*/"))}


def matrices(draw, batch=None, b_batched=False):
    """[m, k] and [k, n]; with `batch`, [p, m, k] and [k, n] or [p, k, n]."""
    m, k, n = draw(SIZES), draw(SIZES), draw(SIZES)
    if batch is None:
        return [(m, k), (k, n)], {}
    p = draw(st.integers(1, batch))
    return [(p, m, k), (p, k, n) if b_batched else (k, n)], {}


def two_matrices_of_one_shape(draw):
    return [(draw(SIZES), draw(SIZES))] * 2, {}


def cat_example(draw):
    """Tensors whose sizes differ along a dim only, and the dim."""
    s = shape(draw)
    dim = draw(st.integers(-len(s), len(s) - 1))
    at = dim % len(s)
    sizes = draw(st.lists(SIZES, min_size=1, max_size=3))
    return [s[:at] + (n,) + s[at + 1:] for n in sizes], {"dim": dim}


def stack_example(draw):
    s = shape(draw)
    return [s] * draw(st.integers(1, 3)), {"dim": draw(st.integers(-len(s) - 1, len(s)))}


def narrow_example(draw):
    s = shape(draw)
    dim = draw(st.integers(0, len(s) - 1))
    start = draw(st.integers(0, s[dim] - 1))
    return [s], {"dim": dim, "start": start, "length": draw(st.integers(0, s[dim] - start))}


def index_example(draw):
    s = shape(draw)
    return [s], {"index": index_for(draw, s)}


# name -> (draw -> (shapes, attributes), f(*tensors, **attributes)); a shape ("int", s) is of
# an int64 tensor (no gradient).
CASES = {
    "div-by-tensor": (two, lambda a, b: a / positive(b)),
    "div-by-number": (lambda d: ([shape(d)], {"s": d(st.sampled_from([3.0, -0.5, 7]))}),
                      lambda a, s: a / s + torch.div(a, s)),
    "number-divided": (one, lambda a: 2.0 / positive(a)),
    "number-plus-minus": (one, lambda a: (a + 1.5) - (2 - a) * 3 - -a),
    "exp-log": (two, lambda a, b: torch.exp(a * 0.5) + torch.log(positive(b)) + positive(a).log().exp()),
    "clamp": (lambda d: ([shape(d)], {"lo": d(st.floats(-1, 0.5)), "hi": d(st.floats(-0.5, 1))}),
              lambda a, lo, hi: a.clamp(lo, hi) + torch.clamp(a, min=lo) + a.clamp(max=hi)
              + torch.clip(a, lo, hi) + a.clamp_min(lo) + torch.clamp_max(a, hi)),
    "float": (lambda d: ([("int", shape(d))], {}), lambda labels: labels.float() * 0.5),
    "int-slices": (int_slices_example,
                   lambda labels, index: torch.cat([labels[index].reshape(-1), labels.reshape(-1)])),
    "float-of-float": (one, lambda a: a.float() * 2.0),
    "sum-mean-dim": (dim_of, lambda a, dim, keepdim: (a.sum(dim, keepdim) * 2.0
                                                      + torch.mean(a, dim=dim, keepdim=keepdim)
                                                      + a.sum(dim=dim, keepdim=keepdim).sum()
                                                      + a.mean())),
    "sum-mean-dims": (lambda d: one(d, 3, 3),
                      lambda a: a.sum((0, 2)) + torch.mean(a, dim=[-1, 0]) + a.sum([1], keepdim=True).sum([0, 2])),
    "centered": (lambda d: one(d, 2, 3), lambda y: y - y.mean(dim=1, keepdim=True)),
    "broadcast": (broadcasting,
                  lambda a, b, op: {"+": a + b, "-": a - b, "*": a * b, "/": a / positive(b)}[op]),
    "broadcast-both": (lambda d: ([(d(SIZES), 1), (d(SIZES),)], {}), lambda a, b: a * b - b / positive(a)),
    "transpose": (lambda d: one(d, 2, 2), lambda a: a.t() + a.T * 2.0 + torch.t(a) + a.transpose(1, 0)
                  + torch.transpose(a, -1, 0) + a.mT + a.transpose(1, 1).t()),
    "transpose-3d": (lambda d: one(d, 3, 3), lambda a: a.transpose(-1, -2) * 2.0 + a.mT),
    # (squeeze() drops a's own dims of size 1 too: reshaped back)
    "unsqueeze-squeeze": (dim_of, lambda a, dim, keepdim: a.unsqueeze(dim).squeeze().reshape(a.shape)
                          * 2.0 + torch.unsqueeze(a, -1).squeeze(-1) + a.unsqueeze(0).squeeze((0,))),
    "matmul": (matrices, lambda a, b: a @ b + torch.matmul(a, b) + torch.mm(a, b) + a.matmul(b)),
    "matmul-nd-2d": (lambda d: matrices(d, batch=3), lambda a, b: a @ b),
    "bmm": (lambda d: matrices(d, batch=4, b_batched=True), lambda a, b: a @ b + torch.bmm(a, b)),
    "matmul-of-transposed": (two_matrices_of_one_shape, lambda a, b: a.t() @ b + b.T @ a),
    "cat": (cat_example, lambda *xs, dim: torch.cat(list(xs), dim) * 1.0),
    "stack": (stack_example, lambda *xs, dim: torch.stack(list(xs), dim=dim) * 1.0),
    "index": (index_example, lambda a, index: a[index] * 1.0),
    # b's gradient comes only through `+ b`: none through the detached products
    "detach": (two, lambda a, b: a * b.detach() + (a * b).detach() * a + torch.detach(b) + b),
    "narrow": (narrow_example,
               lambda a, dim, start, length: torch.narrow(a, dim, start, length) + a.narrow(dim, start, length)),
}

# the cases of int64 tensors only: no gradient
INT_CASES = {"float", "int-slices"}


def index_for(draw, s):
    """An index of ints and slices (of step 1, maybe empty, maybe out of range), maybe with
    `...` in place of some of them."""
    items = [draw(st.integers(-n, n - 1)) if draw(st.booleans())
             else slice(draw(st.none() | st.integers(-n - 2, n + 2)),
                        draw(st.none() | st.integers(-n - 2, n + 2)))
             for n in s]
    start = draw(st.integers(0, len(s)))
    end = draw(st.integers(start, len(s)))
    if draw(st.booleans()):
        return (*items[:start], Ellipsis, *items[end:])
    return items[0] if end == 0 else tuple(items[:max(end, 1)])


def example(draw, name):
    """The tensors (random values of the drawn shapes) and attributes of a case."""
    shapes, attributes = CASES[name][0](draw)
    tensors = [torch.randint(0, 9, s[1]) if isinstance(s[0], str) else torch.randn(*s) for s in shapes]
    return tensors, attributes


def staged(f, attributes):
    """f with its attributes bound, as a function of tensors only (what hytorch.stage takes)."""
    def g(*tensors):
        return f(*tensors, **attributes)
    return g


def tensor_type(t):
    return hytorch.TensorType(list(t.shape), t.dtype)


def assert_close(actual, expected, what=""):
    assert actual.shape == expected.shape, what
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=ATOL, msg=what)


# $HYTORCH_OP_EXAMPLES: fewer examples for the run under the sanitizers
EXAMPLES = settings(max_examples=int(os.environ.get("HYTORCH_OP_EXAMPLES", "5")),
                    deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("name", sorted(CASES))
@EXAMPLES
@given(data=st.data())
def test_forward(name, data):
    torch.manual_seed(0)
    tensors, attributes = example(data.draw, name)
    f = staged(CASES[name][1], attributes)
    compiled = hytorch.stage(f, *map(tensor_type, tensors))
    assert_close(compiled(*tensors), f(*tensors), compiled.ir)


def one_step(optimizer, loss_fn, *tensors):
    optimizer.zero_grad()
    loss = loss_fn(*tensors)
    loss.backward()
    optimizer.step()
    return loss.item()


@pytest.mark.parametrize("name", sorted(set(CASES) - INT_CASES))
@EXAMPLES
@given(data=st.data())
def test_gradients(name, data):
    """The gradient of each float input (a parameter) of (f(...) * aux).sum() against autograd."""
    torch.manual_seed(1)
    tensors, attributes = example(data.draw, name)
    f = staged(CASES[name][1], attributes)
    params = [nn.Parameter(t) for t in tensors]
    aux = torch.randn(f(*tensors).shape)
    loss_fn = lambda aux, *params: (f(*params) * aux).sum()   # noqa: E731

    expected_params = [nn.Parameter(t.clone()) for t in tensors]
    expected_loss = loss_fn(aux, *expected_params)
    expected_loss.backward()

    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.SGD(params, lr=1.0)
    step = hytorch.stage(one_step, optimizer, loss_fn, tensor_type(aux), *params)
    loss = step(optimizer, loss_fn, aux, *params)
    # the loss sums products of up to some thousands of terms, in another order than torch
    assert abs(loss - expected_loss.item()) <= ATOL + 10 * RTOL * abs(expected_loss.item())
    for b, p, e in zip(before, params, expected_params):
        assert_close(b - p.detach(), e.grad, step.ir)


# ---- training: small models of these ops, several SGD steps with momentum, against eager

class Normalized(nn.Module):
    """Linear, centred and scaled per row, clamp, a second linear by matmul, exp and log."""

    def __init__(self, n_in, hidden, n_out):
        super().__init__()
        self.first = nn.Linear(n_in, hidden)
        self.second = nn.Parameter(torch.randn(hidden, n_out) * 0.3)

    def forward(self, x):
        h = self.first(x)
        h = h - h.mean(dim=1, keepdim=True)
        h = h / ((h * h).mean(1, True).clamp(min=1e-3) + 1.0)
        h = h.clamp(-2.0, 2.0)
        return torch.log(torch.exp(h @ self.second).sum(dim=1))


class Attention(nn.Module):
    """A tiny self-attention over a batch of sequences: `@` of 3-D by 2-D, bmm with k
    transposed (by transpose, and by a stack of each sequence's k.t()), softmax, cat with the
    input, the first position sliced."""

    def __init__(self, d):
        super().__init__()
        self.q, self.k, self.v = (nn.Parameter(torch.randn(d, d) * 0.4) for _ in range(3))

    def forward(self, x):                      # x [b, s, d]
        q, k, v = x @ self.q, x @ self.k, x @ self.v
        scores = (torch.bmm(q, k.transpose(1, 2))
                  + q @ torch.stack([k[i].t() for i in range(k.shape[0])])) * 0.5
        attended = torch.bmm(torch.softmax(scores / 2.0, dim=-1), v)
        both = torch.cat([attended, x], dim=2)
        return both[:, 0, :].sum(dim=1)


def train_step(model, optimizer, x, target):
    optimizer.zero_grad()
    loss = ((model(x) - target) * (model(x) - target)).mean()
    loss.backward()
    optimizer.step()
    return loss.item()


@pytest.mark.parametrize("make, x_shape, target_shape", [
    (lambda: Normalized(7, 19, 3), (5, 7), (5,)),
    (lambda: Attention(6), (3, 5, 6), (3,)),
])
def test_training_matches_eager(make, x_shape, target_shape):
    torch.manual_seed(2)
    compiled_model, eager_model = make(), make()
    eager_model.load_state_dict(compiled_model.state_dict())
    compiled_opt = torch.optim.SGD(compiled_model.parameters(), lr=0.05, momentum=0.9)
    eager_opt = torch.optim.SGD(eager_model.parameters(), lr=0.05, momentum=0.9)
    step = hytorch.stage(train_step, compiled_model, compiled_opt,
                         hytorch.TensorType(list(x_shape)), hytorch.TensorType(list(target_shape)))
    for _ in range(6):
        x, target = torch.randn(*x_shape), torch.randn(*target_shape)
        loss = step(compiled_model, compiled_opt, x, target)
        expected = train_step(eager_model, eager_opt, x, target)
        assert abs(loss - expected) <= 1e-4 * (1 + abs(expected))
    for (name, p), e in zip(compiled_model.named_parameters(), eager_model.parameters()):
        torch.testing.assert_close(p.detach(), e.detach(), rtol=1e-4, atol=1e-5, msg=name)


# ---- the kernels themselves, on bigger ragged sizes, in each vector build, with accumulate

@pytest.fixture(scope="module", params=list(BUILDS))
def rt(request):
    return load_runtime(KERNELS_CDEF, BUILDS[request.param])


KERNEL_SIZES = st.integers(1, 70)


def along_dim(draw):
    """[outer, n, inner] sizes (vectors of 16 and their tails, inner = 1 a row's sum)."""
    return draw(st.integers(1, 5)), draw(KERNEL_SIZES), draw(st.sampled_from([1, 3, 16, 17, 40]))


@settings(max_examples=25, deadline=None, derandomize=True)
@given(data=st.data())
def test_along_a_dim_kernels(rt, data):
    ffi, lib = rt
    outer, n, inner = along_dim(data.draw)
    start = data.draw(st.integers(0, n - 1))
    length = data.draw(st.integers(0, n - start))
    x = torch.randn(outer, n, inner)
    p = lambda a: ptr(ffi, a)   # noqa: E731
    y = garbage((outer, inner))
    lib.ht_sum_dim(p(y), p(f32(x)), outer, n, inner)
    torch.testing.assert_close(torch.from_numpy(y), x.sum(1), rtol=1e-5, atol=1e-5)
    lib.ht_mean_dim(p(y), p(f32(x)), outer, n, inner)
    torch.testing.assert_close(torch.from_numpy(y), x.mean(1), rtol=1e-5, atol=1e-6)
    dy, big = torch.randn(outer, 1, inner), f32(torch.randn(outer, n, inner))
    expanded = garbage((outer, n, inner))
    lib.ht_expand_dim(p(expanded), p(f32(dy)), outer, n, inner)
    torch.testing.assert_close(torch.from_numpy(expanded), dy.expand(outer, n, inner))
    before = big.copy()
    lib.ht_mean_dim_bwd(p(big), p(f32(dy)), outer, n, inner, 1)
    torch.testing.assert_close(torch.from_numpy(big), torch.from_numpy(before) + dy / n)
    part = garbage((outer, length, inner))
    lib.ht_narrow_fwd(p(part), p(f32(x)), outer, n, start, length, inner)
    torch.testing.assert_close(torch.from_numpy(part), x[:, start:start + length])
    g = torch.randn(outer, length, inner)
    whole = garbage((outer, n, inner))
    lib.ht_narrow_bwd(p(whole), p(f32(g)), outer, n, start, length, inner, 0)
    expected = torch.zeros(outer, n, inner)
    expected[:, start:start + length] = g
    torch.testing.assert_close(torch.from_numpy(whole), expected)
    b = torch.randn(outer, length, inner)
    joined = garbage((outer, n + length, inner))
    lib.ht_cat_fwd(p(joined), p(f32(x)), p(f32(b)), outer, n, length, inner)
    torch.testing.assert_close(torch.from_numpy(joined), torch.cat([x, b], 1))
    grads = [f32(torch.ones(outer, k, inner)) for k in (n, length)]
    for second, (grad, expected) in enumerate(zip(grads, torch.split(torch.from_numpy(joined), [n, length], 1))):
        lib.ht_cat_bwd(p(grad), p(joined), outer, n, length, inner, second, 1)
        torch.testing.assert_close(torch.from_numpy(grad), expected + 1)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(planes=st.integers(1, 3), m=KERNEL_SIZES, k=KERNEL_SIZES, n=KERNEL_SIZES)
def test_matmul_and_transpose_kernels(rt, planes, m, k, n):
    ffi, lib = rt
    p = lambda a: ptr(ffi, a)   # noqa: E731
    a = torch.randn(planes, m, k, requires_grad=True)
    b = torch.randn(planes, k, n, requires_grad=True)
    y, dy = a @ b, torch.randn(planes, m, n)
    y.backward(dy)
    out = garbage((planes, m, n))
    lib.ht_matmul_fwd(p(out), p(f32(a.detach())), p(f32(b.detach())), planes, m, k, n)
    torch.testing.assert_close(torch.from_numpy(out), y.detach(), rtol=1e-4, atol=1e-4)
    da, db = garbage((planes, m, k)), f32(torch.ones(planes, k, n))
    lib.ht_matmul_bwd_a(p(da), p(f32(dy)), p(f32(b.detach())), planes, m, k, n)
    lib.ht_matmul_bwd_b(p(db), p(f32(dy)), p(f32(a.detach())), planes, m, k, n, 1)
    torch.testing.assert_close(torch.from_numpy(da), a.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.from_numpy(db), b.grad + 1, rtol=1e-4, atol=1e-4)
    t = garbage((planes, k, m))
    lib.ht_transpose(p(t), p(f32(a.detach())), planes, m, k)
    torch.testing.assert_close(torch.from_numpy(t), a.detach().transpose(1, 2))


def test_elementwise_kernels_propagate_nan_and_infinities_as_torch(rt):
    ffi, lib = rt
    p = lambda a: ptr(ffi, a)   # noqa: E731
    nan, inf = float("nan"), float("inf")
    x = torch.tensor([nan, inf, -inf, 0.0, -0.0, 1.5, -2.0, 1e-30] * 3)   # 24: a block and a tail
    y = torch.tensor([2.0, 0.0, -0.0, nan, inf, -inf, 3.0, 0.5] * 3)
    for kernel, expected in [(lambda o: lib.ht_div(p(o), p(f32(x)), p(f32(y)), 24), x / y),
                             (lambda o: lib.ht_exp_fwd(p(o), p(f32(x)), 24), torch.exp(x)),
                             (lambda o: lib.ht_log_fwd(p(o), p(f32(y)), 24), torch.log(y)),
                             (lambda o: lib.ht_clamp_min_fwd(p(o), p(f32(x)), -1.0, 24), x.clamp(min=-1.0)),
                             (lambda o: lib.ht_clamp_max_fwd(p(o), p(f32(x)), 1.0, 24), x.clamp(max=1.0)),
                             (lambda o: lib.ht_scalar_div(p(o), 2.0, p(f32(y)), 24), 2.0 / y)]:
        out = garbage(24)
        kernel(out)
        torch.testing.assert_close(torch.from_numpy(out), expected, equal_nan=True)
    for kernel, bound, torch_bound in [(lib.ht_clamp_min_bwd, -1.0, {"min": -1.0}),
                                       (lib.ht_clamp_max_bwd, 1.0, {"max": 1.0})]:
        xg = x.clone().requires_grad_()
        xg.clamp(**torch_bound).backward(torch.ones(24))
        dx = garbage(24)
        kernel(p(dx), p(f32(torch.ones(24))), p(f32(x)), bound, 24, 0)
        torch.testing.assert_close(torch.from_numpy(dx), xg.grad)


def test_the_ops_run_clean_under_sanitizers(sanitized_run_env):
    """The tests above, two examples each, with the runtime and the models built with
    ASan and UBSan: an out-of-bounds read or write in a kernel or its arguments is a report."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           __file__, "-k", "forward or gradients or training"],
                          capture_output=True, text=True, timeout=3000,
                          cwd=pathlib.Path(__file__).parent.parent,
                          env=dict(sanitized_run_env, HYTORCH_OP_EXAMPLES="2"))
    assert_no_report(proc)
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and int(passed.group(1)) == 2 * len(CASES) - len(INT_CASES) + 2, proc.stdout[-2000:]


# What is not supported (a StagingError naming the .hy form) and training on a data loader's
# batches (a staged `for`): test_more_tensor_ops_in_hy.hy

def test_an_int_tensor_has_no_division_or_exp():
    labels = hytorch.TensorType([4], torch.int64)
    for f, message in [(lambda t: t / 2.0, "division by a constant needs a float32 tensor"),
                       (lambda t: torch.exp(t), "exp needs a float32 tensor"),
                       (lambda t: t.sum(0), "sum needs a float32 tensor")]:
        with pytest.raises(hytorch.StagingError, match=message):
            hytorch.lms_compile(f, labels)


@pytest.mark.parametrize("loss", [
    lambda x, t: F.nll_loss(F.log_softmax(x, dim=1), t, ignore_index=1),
    lambda x, t: F.cross_entropy(x, t, ignore_index=0)])
def test_an_ignore_index_is_refused_not_dropped(loss):
    # (it was accepted and not applied: a loss over every target, where torch skips some)
    with pytest.raises(hytorch.StagingError, match="ignore_index"):
        hytorch.lms_compile(loss, hytorch.TensorType([3, 3]), hytorch.TensorType([3], torch.int64))
