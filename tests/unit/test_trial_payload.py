"""The trial payload: typed on both sides of Tune's param_space, plain JSON in between."""
import json

import pytest
from pydantic import ValidationError

from raygrid.orchestration.payload import PARAM_KEY, TrialPayload
from raygrid.spec.loader import load_grid


def quickstart_payload(cell_index=0):
    grid = load_grid("grids/quickstart.yaml")
    cell = grid.cells[cell_index]
    payload = TrialPayload(name=cell.name, config=cell.config, axis={"model.pooling": "cls"}, data_dir="/cache/x",
                           resources=cell.resources, use_gpu=False, storage_path="/runs/ray/train")
    return cell, payload


def test_payload_survives_tunes_json_round_trip_with_its_types():
    cell, payload = quickstart_payload(3)
    wire = json.loads(json.dumps({PARAM_KEY: payload.to_tune()}))  # what Tune stores and hands back
    back = TrialPayload.from_tune(wire)
    assert back == payload
    assert back.config == cell.config and back.config.model.p_drop == cell.config.model.p_drop
    assert back.resources.cpus_per_worker == cell.resources.cpus_per_worker and back.driver_started is None


def test_a_payload_with_an_unknown_or_bad_key_is_refused_by_the_trial():
    _, payload = quickstart_payload()
    wire = payload.to_tune()
    with pytest.raises(ValidationError, match="extra_forbidden|Extra inputs"):
        TrialPayload.from_tune({PARAM_KEY: {**wire, "bogus": 1}})
    bad = {**wire, "config": {**wire["config"], "optim": {**wire["config"]["optim"], "lr": -1}}}
    with pytest.raises(ValidationError, match="lr"):
        TrialPayload.from_tune({PARAM_KEY: bad})
