"""Reference kernel, the registry of variant records and the typed attention parameters."""
from __future__ import annotations

import subprocess
import sys
import typing

import pytest
import torch
from pydantic import TypeAdapter, ValidationError

from raygrid import attention
from raygrid.attention import FavorParams, LshParams, SoftmaxParams
from raygrid.attention.softmax import softmax_attention, softmax_weights


def _qkv(b=2, h=3, n=11, d=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, h, n, d, generator=gen) for _ in range(3))


def test_record_kinds_equal_param_kinds():
    union = typing.get_args(typing.get_args(attention.AttentionParams)[0])
    kinds = {typing.get_args(model.model_fields["kind"].annotation)[0] for model in union}
    assert set(attention.kinds()) == kinds >= {"softmax", "favor", "lsh"}


def test_get_unknown_lists_names():
    assert attention.get("softmax").hook("kernel") is softmax_attention
    with pytest.raises(KeyError, match="softmax"):
        attention.get("performer")


def test_softmax_matches_naive_with_padding():
    q, k, v = _qkv()
    mask = torch.ones(2, 11, dtype=torch.bool)
    mask[1, 7:] = False
    expected = softmax_weights(q, k, mask) @ v
    torch.testing.assert_close(softmax_attention(q, k, v, mask), expected, atol=1e-5, rtol=1e-5)
    assert softmax_weights(q, k, mask)[1, ..., 7:].abs().max() == 0


def test_softmax_padding_invariance_and_grads():
    q, k, v = _qkv(b=1, n=9)
    pad = [torch.cat([t, 100 * torch.randn(1, 3, 4, 8)], dim=2) for t in (q, k, v)]
    mask = torch.ones(1, 13, dtype=torch.bool)
    mask[:, 9:] = False
    out = softmax_attention(*pad, mask)[:, :, :9]
    torch.testing.assert_close(out, softmax_attention(q, k, v), atol=1e-5, rtol=1e-5)
    q.requires_grad_(True)
    softmax_attention(q, k, v).sum().backward()
    assert torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0


def test_softmax_dropout_only_when_asked():
    q, k, v = _qkv()
    mask = torch.ones(2, 11, dtype=torch.bool)
    mask[1, 7:] = False
    torch.testing.assert_close(softmax_attention(q, k, v, mask, dropout_p=0.0), softmax_attention(q, k, v, mask))
    torch.manual_seed(0)
    dropped = softmax_attention(q, k, v, mask, dropout_p=0.5)
    assert torch.isfinite(dropped).all() and not torch.allclose(dropped, softmax_attention(q, k, v, mask))


@pytest.mark.parametrize("params,key", [({"kind": "favor", "nb_features": 65}, "nb_features"),
                                        ({"kind": "lsh", "num_buckets": 5}, "num_buckets")])
def test_params_errors_name_the_key(params, key):
    with pytest.raises(ValidationError) as error:
        TypeAdapter(attention.AttentionParams).validate_python(params)
    assert error.value.errors()[0]["loc"][-1] == key  # grid errors then read `attention.<key>: …`


def test_params_discriminated_strict_and_frozen():
    adapter = TypeAdapter(attention.AttentionParams)
    assert isinstance(adapter.validate_python({"kind": "lsh", "num_hashes": 4}), LshParams)
    assert adapter.validate_python({"kind": "softmax"}) == SoftmaxParams()
    with pytest.raises(ValidationError):
        adapter.validate_python({"kind": "favor", "nb_feature": 64})  # typo -> extra key
    with pytest.raises(ValidationError):
        FavorParams().nb_features = 3  # frozen


def test_params_validation_rules():
    with pytest.raises(ValidationError, match="even"):
        FavorParams(feature_map="hyperbolic", nb_features=65)
    assert FavorParams(feature_map="positive", nb_features=65).num_omegas == 65
    assert FavorParams(feature_map="hyperbolic", nb_features=64).num_omegas == 32
    with pytest.raises(ValidationError, match="even"):
        LshParams(num_buckets=5)
    assert LshParams(num_buckets=1).num_buckets == 1
    defaults = LshParams()
    assert (defaults.round_combine, defaults.look_backward, defaults.look_forward, defaults.exclude_self) == (
        "mean", 1, 0, False)


def test_package_import_stays_light():
    code = ("import sys, raygrid.attention; raygrid.attention.records(); "
            "print(sorted(m for m in ('torch', 'transformers', 'ray', 'mlflow') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
