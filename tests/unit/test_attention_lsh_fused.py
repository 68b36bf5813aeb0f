"""LSH on the fused kernel (flex_attention) equals the reference kernel, rule by rule, gradients included.

On CPU flex_attention runs its eager path (forward only, the mods evaluated on the full score matrix);
gradients go through `dense_flex`, the same mods with autograd. The compiled CUDA kernel additionally
skips every key block the BlockMask leaves out: test_block_mask_lists_every_block_the_window_reaches
checks that it never leaves out a block the window reaches (tests/gpu runs the compiled kernel itself).
"""
from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from raygrid.attention import LshParams, hf_bridge, lsh_fused
from raygrid.attention.lsh import lsh_attention, lsh_trace
from raygrid.attention.variants.lsh import for_max_len

B, H, N, D = 2, 2, 37, 16


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _inputs(seed=0):
    gen = _gen(seed)
    return tuple(torch.randn(B, H, N, D, generator=gen) for _ in range(3))


def _mask(kind: str) -> torch.Tensor:
    real = torch.ones(B, N, dtype=torch.bool)
    if kind == "suffix":
        real[1, 29:] = False
    elif kind == "holes":  # left padding and a gap: sorting puts padding last whatever its place
        real[0, :3] = False
        real[1, 10:20] = False
    elif kind == "lone":  # one real token: with exclude_self its own key is all it has
        real[1, 1:] = False
    elif kind == "empty":  # a row without any real token: zero output, zero gradients
        real[1] = False
    return real


# Window edges (N = 37 is no multiple of the chunk; neighbours missing at both ends), self on/off,
# padding, mask on/off, one bucket, several rounds, both qk modes and both round combinations.
CASES = {
    "study": (dict(qk="shared", look_backward=1, look_forward=1, round_combine="mean", num_buckets=4, chunk_size=8,
                   num_hashes=2), "suffix"),
    "shared-mask-weighted": (dict(qk="shared", mask_within_chunks=True, round_combine="weighted", num_buckets=4,
                                  chunk_size=5, num_hashes=3), "holes"),
    "separate-self-kept": (dict(qk="separate", num_buckets=4, chunk_size=5, num_hashes=2), "suffix"),
    "separate-mask-fallback": (dict(qk="separate", mask_within_chunks=True, exclude_self=True, num_buckets=8,
                                    chunk_size=4, num_hashes=3, round_combine="weighted"), "holes"),
    "one-bucket-one-chunk": (dict(num_buckets=1, chunk_size=64, num_hashes=2, mask_within_chunks=True), "suffix"),
    "wide-window": (dict(qk="shared", look_backward=2, look_forward=3, num_buckets=6, chunk_size=4,
                         num_hashes=1), "none"),
    "lone-token-self": (dict(qk="shared", num_buckets=2, chunk_size=8, num_hashes=2, mask_within_chunks=True), "lone"),
    "empty-row": (dict(qk="separate", exclude_self=True, num_buckets=4, chunk_size=8, num_hashes=2), "empty"),
}


def _run(params: LshParams, inputs, real, implementation: str, grad: bool, seed: int = 3):
    """(output, gradients of q, k, v) of one kernel; gradients of a fixed random projection of the output."""
    leaves = [t.clone().requires_grad_(grad) for t in inputs]
    with torch.set_grad_enabled(grad):
        out = lsh_attention(*leaves, real, params=params.model_copy(update={"implementation": implementation}),
                            generator=_gen(seed))
    if not grad:
        return out, []
    (out * torch.randn(out.shape, generator=_gen(11))).sum().backward()
    return out.detach(), [t.grad for t in leaves]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (0 when both vanish)."""
    scale = float(b.abs().max())
    return float((a - b).abs().max()) / scale if scale else float((a - b).abs().max())


@pytest.mark.parametrize("case", list(CASES))
def test_fused_equals_reference_forward_and_gradients(case, monkeypatch):
    fields, mask = CASES[case]
    params, inputs, real = LshParams(**fields), _inputs(), _mask(mask)
    seen = []
    for name in ("_call_flex", "dense_flex"):  # which executor ran (the fused path must really run)
        original = getattr(lsh_fused, name)
        monkeypatch.setattr(lsh_fused, name, lambda *a, _f=original, _n=name, **k: seen.append(_n) or _f(*a, **k))
    reference, reference_grads = _run(params, inputs, real, "reference", grad=True)
    fused, _ = _run(params, inputs, real, "fused", grad=False)  # flex_attention's own (eager) path
    assert seen == ["_call_flex"]
    assert _rel(fused, reference) <= 1e-5
    fused, fused_grads = _run(params, inputs, real, "fused", grad=True)  # the same mods under autograd
    assert seen == ["_call_flex", "dense_flex"]
    assert _rel(fused, reference) <= 1e-5
    for ours, theirs in zip(fused_grads, reference_grads):
        assert (ours is None) == (theirs is None)  # qk: shared reads no key
        if theirs is not None:
            assert torch.isfinite(ours).all() and _rel(ours, theirs) <= 1e-5
    if mask == "empty":
        assert fused[1].abs().max() == 0 and reference_grads[2][1].abs().max() == 0


def test_the_fallback_case_really_falls_back():
    """The separate-Q/K case above exercises the rule: some query-rounds have no same-bucket key."""
    fields, mask = CASES["separate-mask-fallback"]
    q, k, v = _inputs()
    _, trace = lsh_trace(q, k, v, _mask(mask), params=LshParams(**fields), generator=_gen(3))
    assert 0 < trace.fallback.float().mean() < 1


@pytest.mark.parametrize(("chunk", "block", "back", "fwd", "n_pad"),
                         [(8, 8, 1, 0, 40), (8, 16, 1, 1, 40), (12, 16, 2, 1, 48), (5, 64, 1, 0, 35),
                          (64, 64, 1, 1, 192), (64, 128, 1, 0, 192), (128, 128, 1, 1, 384)])
def test_block_mask_lists_every_block_the_window_reaches(chunk, block, back, fwd, n_pad):
    params = LshParams(chunk_size=chunk, look_backward=back, look_forward=fwd)
    mask_mod = lsh_fused.window_mask_mod(params, n_pad, torch.tensor([n_pad]), None, None, None, None, None)
    blocks = lsh_fused.window_block_mask(n_pad, chunk, back, fwd, block, mask_mod, "cpu").to_dense()[0, 0]
    index = torch.arange(n_pad)
    allowed = mask_mod(torch.tensor(0), torch.tensor(0), index[:, None], index[None, :])  # (Np, Np)
    covered = blocks.bool().repeat_interleave(block, 0).repeat_interleave(block, 1)[:n_pad, :n_pad]
    assert allowed.any() and not (allowed & ~covered).any()  # the kernel never skips an allowed key
    reached = torch.zeros_like(blocks, dtype=torch.bool)
    for row, col in allowed.nonzero().tolist():
        reached[row // block, col // block] = True
    assert torch.equal(reached, blocks.bool()) or block != chunk  # exact when tiles are chunks


def test_kernel_choice_is_explicit(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    auto, fused, reference = (LshParams(implementation=i) for i in ("auto", "fused", "reference"))
    monkeypatch.setattr(lsh_fused, "_has_triton", lambda: True)
    assert lsh_fused.choose_kernel(auto, cpu) == "reference"  # CPU: the reference (eager flex is N²)
    assert "CUDA" in lsh_fused.fused_problem(cpu, 0.0)
    assert lsh_fused.choose_kernel(auto, cuda) == "fused"
    assert lsh_fused.choose_kernel(auto, cuda, dropout_p=0.1) == "reference"  # flex has no dropout
    assert lsh_fused.choose_kernel(fused, cpu) == "fused"  # forced: debugging on CPU
    assert lsh_fused.choose_kernel(reference, cuda) == "reference"
    with pytest.raises(ValueError, match="attention.implementation: fused cannot run: .*dropout"):
        lsh_fused.choose_kernel(fused, cuda, dropout_p=0.1)
    monkeypatch.setattr(lsh_fused, "_has_triton", lambda: False)
    assert lsh_fused.choose_kernel(auto, cuda) == "reference"
    monkeypatch.setattr(lsh_fused, "_flex_module", lambda: None)
    with pytest.raises(ValueError, match="no torch.nn.attention.flex_attention"):
        lsh_fused.choose_kernel(fused, cpu)
    with pytest.raises(ValidationError, match="implementation"):
        LshParams(implementation="flex")


def test_num_buckets_from_max_len(tiny_checkpoint):
    from raygrid.model.encoder import build_classifier
    from raygrid.spec.config import CellConfig

    params = LshParams(num_buckets="max_len", chunk_size=64)
    assert for_max_len(params, 4096).num_buckets == 64 and for_max_len(params, 100).num_buckets == 2
    assert for_max_len(LshParams(num_buckets=8), 4096).num_buckets == 8  # other settings untouched
    for bad in ("max_length", 3, 0):
        with pytest.raises(ValidationError, match="num_buckets"):
            LshParams(num_buckets=bad)
    with pytest.raises(ValueError, match="max_len is fixed from data.max_len"):
        lsh_attention(*_inputs(), params=LshParams(num_buckets="max_len"), generator=_gen())
    cell = CellConfig.model_validate({"data": {"dataset": "local", "path": "/x", "max_len": 48},
                                      "model": {"checkpoint": str(tiny_checkpoint)},
                                      "attention": {"kind": "lsh", "chunk_size": 8, "num_buckets": "max_len"}})
    assert cell.attention.num_buckets == "max_len"  # the cell keeps the rule (stages of other lengths match)
    layers = hf_bridge.attention_modules(build_classifier(cell, 2))
    assert {layer.raygrid_attention_params.num_buckets for layer in layers} == {6}  # 48 / 8, fixed per cell
