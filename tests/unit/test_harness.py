"""The test harness itself: what the tiers rely on to be fast without testing less."""
import sqlite3

from tests.integration.local_cluster import free_port


def test_free_port_never_hands_out_the_same_port_twice():
    # The kernel reuses a just-released ephemeral port readily; two equal ports made `ray start` refuse to start.
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports) and all(20000 <= port < 32000 for port in ports)


def test_a_new_store_copied_from_the_session_schema_is_mlflows_own(tmp_path):
    """Stores after the session's first are copies of its fresh schema (tests/conftest.py): they hold
    MLflow's newest schema revision, no runs, and take runs as a store MLflow built would."""
    from mlflow.store.db.utils import _get_latest_schema_revision
    from mlflow.tracking import MlflowClient

    for name in ("first", "second"):
        client = MlflowClient(f"sqlite:///{tmp_path / name}.db")
        experiment = client.create_experiment("harness")
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "m", 1.0)
        assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
        assert [r.info.run_id for r in client.search_runs([experiment])] == [run.info.run_id]  # nothing copied in
        with sqlite3.connect(tmp_path / f"{name}.db") as db:
            assert db.execute("select version_num from alembic_version").fetchall() == [(_get_latest_schema_revision(),)]
