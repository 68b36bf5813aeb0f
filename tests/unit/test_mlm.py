"""Masked-language modelling: masking rule, loss falls, export -> next stage carries the weights."""
import math

import pyarrow.parquet as pq
import pytest
import torch

from raygrid.spec.config import CellConfig, MlmConfig
from raygrid.data.batching import iterate_table
from raygrid.data.mlm_data import prepare_mlm
from raygrid.model.encoder import build_classifier, build_masked_lm, export_pretrained, weights_fingerprint
from raygrid.training.objectives import MaskedLanguageModel, mask_tokens
from raygrid.training.train_loop import Loaders, fit
from tests.conftest import SAMPLE

SPECIAL = [0, 1, 2, 3, 4]  # [PAD] [UNK] [CLS] [SEP] [MASK] in the tiny vocabulary


def _objective(**mlm) -> MaskedLanguageModel:
    return MaskedLanguageModel(MlmConfig(**mlm), mask_token_id=4, vocab_size=100, special_ids=SPECIAL, seed=0)


def test_masking_selects_15_percent_of_real_tokens_and_corrupts_80_10_10():
    ids = torch.randint(5, 100, (64, 512))
    ids[:, 0], ids[:, -1] = 2, 3
    mask = torch.ones_like(ids)
    mask[:, 400:] = 0  # padding
    ids[:, 400:] = 0
    corrupted, labels = mask_tokens(ids, mask, _objective(), torch.Generator().manual_seed(1))
    picked = labels != -100
    assert not picked[:, 0].any() and not picked[:, 399 + 1:].any()  # specials and padding never predicted
    assert torch.equal(labels[picked], ids[picked])
    share = picked.sum().item() / (64 * 398)
    assert share == pytest.approx(0.15, abs=0.01)
    as_mask = (corrupted[picked] == 4).float().mean().item()
    kept = (corrupted[picked] == ids[picked]).float().mean().item()
    assert as_mask == pytest.approx(0.8, abs=0.02) and kept == pytest.approx(0.1 + 0.1 / 96, abs=0.02)
    assert torch.equal(corrupted[~picked], ids[~picked])
    again, labels_again = mask_tokens(ids, mask, _objective(), torch.Generator().manual_seed(1))
    assert torch.equal(again, corrupted) and torch.equal(labels_again, labels)


def _mlm_setup(tiny_checkpoint, tmp_path, epochs=3, attention=None):
    raw = {"kind": "mlm", "data": {"dataset": "hyperpartisan", "path": str(SAMPLE), "max_len": 64,
                                   "limit": {"train": 12, "validation": 6}},
           "model": {"checkpoint": str(tiny_checkpoint), "from_scratch": True},
           "attention": attention or {"kind": "softmax"},
           "optim": {"lr": 2e-3, "epochs": epochs, "batch_size": 16, "warmup_ratio": 0.0}}
    cfg = CellConfig.model_validate(raw)
    data = prepare_mlm(cfg.data, cfg.model.checkpoint, tmp_path, progress=False)
    tables = {s: pq.read_table(data.split_path(s)) for s in ("train", "validation")}
    pad = data.meta["pad_token_id"]
    loaders = Loaders(train=lambda e: iterate_table(tables["train"], 16, pad, shuffle_seed=e),
                      validation=lambda: iterate_table(tables["validation"], 32, pad), test=None,
                      steps_per_epoch=math.ceil(tables["train"].num_rows / 16))
    objective = MaskedLanguageModel(cfg.mlm, data.meta["mask_token_id"], data.meta["vocab_size"],
                                    data.meta["special_ids"], cfg.seed)
    return cfg, data, loaders, objective


def test_mlm_blocks_from_task_text_are_full_and_exclude_test(tiny_checkpoint, tmp_path):
    cfg, data, _, _ = _mlm_setup(tiny_checkpoint, tmp_path)
    assert set(data.meta["splits"]) == {"train", "validation"}  # task-adaptive MLM never reads test
    train = pq.read_table(data.split_path("train"))
    assert train.num_rows > 20 and set(train["n_tokens"].to_pylist()) == {64}
    assert all(len(row) == 64 for row in train["input_ids"].to_pylist()[:20])
    assert data.meta["splits"]["train"]["documents"] == 12 and data.meta["splits"]["validation"]["documents"] == 6


def test_mlm_loss_falls_and_the_next_stage_starts_from_the_exported_weights(tiny_checkpoint, tmp_path):
    cfg, data, loaders, objective = _mlm_setup(tiny_checkpoint, tmp_path)
    model = build_masked_lm(cfg)
    fresh = weights_fingerprint(model.encoder)
    reports = []
    final = fit(cfg, model, loaders, objective, torch.device("cpu"), lambda m, s: reports.append(m))
    epochs = [m for m in reports if "epoch" in m]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"] - 0.1
    assert epochs[-1]["val_loss"] < epochs[0]["val_loss"]
    assert final["final_val_loss"] == pytest.approx(epochs[-1]["val_loss"])
    assert final["best_val_loss"] == pytest.approx(min(m["val_loss"] for m in epochs))
    assert "test_f1_macro" not in final and {"val_mlm_accuracy", "val_mlm_perplexity"} <= epochs[0].keys()

    trained = weights_fingerprint(model.encoder)
    assert trained != fresh
    folder = export_pretrained(model, tmp_path / "export", cfg.model.checkpoint)
    child = CellConfig.model_validate({"data": {"dataset": "hyperpartisan", "path": str(SAMPLE), "max_len": 64},
                                       "model": {"checkpoint": "stage:g/mlm/x", "pooling": "mean"}})
    classifier = build_classifier(child, num_labels=2, location=str(folder))
    assert weights_fingerprint(classifier.encoder) == trained  # the MLM head is dropped, the encoder carries over
    assert weights_fingerprint(build_classifier(child.model_copy(update={"model": child.model.model_copy(
        update={"checkpoint": str(tiny_checkpoint)})}), 2).encoder) != trained


def test_fixed_favor_features_carry_over_to_the_next_stage(tiny_checkpoint, tmp_path):
    attention = {"kind": "favor", "nb_features": 16, "feature_map": "hyperbolic"}
    cfg, data, _, _ = _mlm_setup(tiny_checkpoint, tmp_path, epochs=1, attention=attention)
    model = build_masked_lm(cfg)
    from raygrid.attention.hf_bridge import attention_modules

    layers = attention_modules(model.encoder)
    for module in layers:  # as if training had redrawn them
        module.favor_projection.normal_()
    folder = export_pretrained(model, tmp_path / "export", cfg.model.checkpoint)
    child = CellConfig.model_validate({"data": {"dataset": "hyperpartisan", "path": str(SAMPLE), "max_len": 64},
                                       "model": {"checkpoint": "stage:g/mlm/x"}, "attention": attention, "seed": 5})
    loaded = attention_modules(build_classifier(child, 2, location=str(folder)).encoder)
    assert all(torch.equal(a.favor_projection, b.favor_projection) for a, b in zip(layers, loaded))


@pytest.mark.parametrize("name, layout", [("wikipedia", "20231101.en/train-0000{}-of-00002.parquet"),
                                          ("wikitext", "wikitext-103-raw-v1/train-0000{}-of-00002.parquet")])
def test_hub_corpora_read_the_hub_layout(tmp_path, monkeypatch, tiny_checkpoint, name, layout):
    """The hub code path (list the corpus' shards, download each when reading reaches it), on local files
    laid out like the hub's: a corpus complete after the first shard never downloads the second."""
    import huggingface_hub
    import pyarrow as pa

    from raygrid.spec.config import DataConfig
    from raygrid.data.corpus import HUB_SOURCES

    body = "the news of the president said " * 20
    # WikiText rows are lines: a " = Title = " line, then the article's lines (rejoined into one document)
    rows = [[f" = Article {i} = \n", f" {body}\n", f" = = Part = = \n", f" {body}\n"] if name == "wikitext"
            else [f"article {i} {body}"] for i in range(40)]
    for shard in range(2):
        path = tmp_path / "hub" / layout.format(shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"text": [line for doc in rows[shard * 20:(shard + 1) * 20] for line in doc]}), path)
    downloaded = []

    class FakeApi:
        def dataset_info(self, repo_id):
            assert repo_id == HUB_SOURCES[name][0]
            return type("Info", (), {"sha": "abc123"})()

        def list_repo_tree(self, repo_id, folder, repo_type, revision):
            assert (repo_type, revision) == ("dataset", "abc123")
            return [type("Entry", (), {"path": f"{folder}/{p.name}"})() for p in (tmp_path / "hub" / folder).iterdir()]

    def fake_download(repo_id, filename, repo_type, revision):
        downloaded.append(filename)
        return str(tmp_path / "hub" / filename)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    data = prepare_mlm(DataConfig(dataset=name, max_len=32, val_fraction=0.25), str(tiny_checkpoint),
                       tmp_path / "cache", progress=False)
    documents = data.meta["splits"]["train"]["documents"] + data.meta["splits"]["validation"]["documents"]
    assert documents == 40 and data.meta["splits"]["validation"]["documents"] > 0  # both shards, every article
    assert downloaded == [layout.format(0), layout.format(1)] and data.meta["source_shards_read"] == 2
    assert data.read_split("train").num_rows > 0
    downloaded.clear()  # a corpus complete within the first shard reads (and downloads) no further
    first = prepare_mlm(DataConfig(dataset=name, max_len=32, val_fraction=0.25, limit={"train": 10}),
                        str(tiny_checkpoint), tmp_path / "cache", progress=False)
    assert downloaded == [layout.format(0)] and first.meta["source_shards_read"] == 1
