"""The fused LSH kernel (compiled flex_attention) and chunked FAVOR+ on CUDA, against the reference kernels.

The CPU tests (tests/unit/test_attention_lsh_fused.py) check the fused kernel's rules on flex_attention's
eager path; only here does the compiled, block-sparse kernel run, skipping the key blocks the BlockMask
leaves out. Each LSH setting compiles once (tens of seconds): the cases are few and chosen to cover the rules.
"""
import pytest
import torch

from raygrid.attention import FavorParams, LshParams, lsh_fused
from raygrid.attention.favor import draw_projection, favor_attention, favor_attention_dense
from raygrid.attention.lsh import lsh_attention
from tests.unit.test_attention_lsh_fused import CASES, _inputs, _mask

pytestmark = pytest.mark.gpu
# The study's rules (shared Q = K, ±1 chunk, self masked, padding) and the separate-Q/K bucket mask with its
# fallback, self masked, weighted rounds, padding holes: between them every rule of the kernel.
GPU_CASES = ("study", "separate-mask-fallback")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


def _lsh(params, inputs, real, implementation, device, dtype=torch.float32, grad=True):
    """[output, grad q, grad k, grad v] of one kernel (grads of a fixed random projection of the output)."""
    leaves = [t.to(device, dtype).requires_grad_(grad) for t in inputs]
    forced = params.model_copy(update={"implementation": implementation})
    with torch.set_grad_enabled(grad):
        out = lsh_attention(*leaves, real.to(device), params=forced, generator=torch.Generator().manual_seed(3))
    if not grad:
        return [out]
    (out.float() * torch.randn(out.shape, generator=torch.Generator().manual_seed(11)).to(device)).sum().backward()
    return [out.detach(), *(t.grad for t in leaves)]


def test_auto_picks_the_fused_kernel_on_cuda(cuda):
    assert lsh_fused.choose_kernel(LshParams(), cuda) == "fused", lsh_fused.fused_problem(cuda, 0.0)


@pytest.mark.parametrize("case", GPU_CASES)
def test_compiled_fused_kernel_equals_the_reference_in_fp32(cuda, case):
    fields, mask = CASES[case]
    params, inputs, real = LshParams(**fields), _inputs(), _mask(mask)
    fused = _lsh(params, inputs, real, "fused", cuda)
    reference = _lsh(params, inputs, real, "reference", cuda)
    for ours, theirs in zip(fused, reference):
        assert (ours is None) == (theirs is None)
        if theirs is not None:
            assert torch.isfinite(ours).all() and _rel(ours, theirs) <= 1e-4


def test_fused_kernel_follows_new_lengths_and_batch_sizes(cuda):
    """Length-grouped batches change shape every step: recompiled (then dynamic), never wrong."""
    params = LshParams(**CASES["study"][0])
    generator = torch.Generator().manual_seed(5)
    for batch, length in ((2, 96), (3, 160), (1, 200), (2, 256)):
        inputs = [torch.randn(batch, 2, length, 16, generator=generator) for _ in range(3)]
        real = torch.ones(batch, length, dtype=torch.bool)
        real[0, length // 2:] = False
        fused = _lsh(params, inputs, real, "fused", cuda, grad=False)[0]
        reference = _lsh(params, inputs, real, "reference", cuda, grad=False)[0]
        assert _rel(fused, reference) <= 1e-4, (batch, length)


def test_fused_kernel_in_bf16_stays_near_the_reference(cuda):
    fields, mask = CASES["study"]
    params, inputs, real = LshParams(**fields), _inputs(), _mask(mask)
    fused = _lsh(params, inputs, real, "fused", cuda, torch.bfloat16)
    reference = _lsh(params, inputs, real, "reference", cuda, torch.bfloat16)
    assert fused[0].dtype == torch.bfloat16
    for ours, theirs in zip(fused, reference):
        if theirs is not None:
            assert torch.isfinite(ours).all()
            assert float((ours.float() - theirs.float()).norm() / theirs.float().norm()) <= 2e-2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_favor_equals_the_dense_formula_on_cuda(cuda, dtype):
    generator = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 4, 1000, 64, generator=generator) * s for s in (1.5, 1.5, 1.0))
    real = torch.ones(2, 1000, dtype=torch.bool)
    real[1, 700:] = False
    params = FavorParams(nb_features=256)
    projection = draw_projection(256, 64, "hyperbolic", True, torch.Generator().manual_seed(1)).to(cuda)
    results = []
    for kernel, extra in ((favor_attention, {"chunk_rows": 128}), (favor_attention_dense, {})):
        leaves = [t.to(cuda, dtype).requires_grad_(True) for t in (q, k, v)]
        out = kernel(*leaves, real.to(cuda), params=params, projection=projection, **extra)
        out.float().pow(2).sum().backward()
        results.append([out.detach(), *(t.grad for t in leaves)])
    tolerance = 1e-4 if dtype == torch.float32 else 1e-2  # bf16: both round the same fp32 values
    for chunked, dense in zip(*results):
        assert chunked.dtype == dtype and _rel(chunked, dense) <= tolerance
