"""A finished cell's resume state is deleted; the exported weights a later stage reads are kept."""
import pyarrow.fs as pafs

from raygrid.orchestration.prune import prune_finished_run


def fake_run(tmp_path):
    run = tmp_path / "train-abc"
    for name in ("checkpoint_2026-11-29_00-00-01", "checkpoint_2026-11-29_00-00-02"):
        (run / name).mkdir(parents=True)
        (run / name / "state.pt").write_bytes(b"x" * 1000)
    (run / "checkpoint_2026-11-29_00-00-02" / "config.json").write_text("{}")
    (run / "checkpoint_manager_snapshot.json").write_text("{}")  # Train's own bookkeeping stays
    return run


def test_a_finetune_cell_keeps_no_checkpoint(tmp_path):
    run = fake_run(tmp_path)
    deleted = prune_finished_run(pafs.LocalFileSystem(), str(run))
    assert len(deleted) == 2
    assert [p.name for p in run.iterdir()] == ["checkpoint_manager_snapshot.json"]


def test_an_mlm_cell_keeps_its_exported_weights_without_resume_state(tmp_path):
    run = fake_run(tmp_path)
    keep = run / "checkpoint_2026-11-29_00-00-02"
    prune_finished_run(pafs.LocalFileSystem(), str(run), keep=str(keep) + "/")
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint_2026-11-29_00-00-02", "checkpoint_manager_snapshot.json"]
    assert [p.name for p in keep.iterdir()] == ["config.json"]


def test_a_run_folder_already_gone_is_fine(tmp_path):
    assert prune_finished_run(pafs.LocalFileSystem(), str(tmp_path / "missing")) == []
