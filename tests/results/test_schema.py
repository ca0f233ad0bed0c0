"""The versioned result schema: JSON and CSV carry the same facts."""

from __future__ import annotations

import csv
import io
import json

from agescan.results import CSV_COLUMNS, SCHEMA, csv_text, to_dict, to_json


def test_json_record(estimator, astronaut_path):
    r = estimator.predict(astronaut_path)
    d = json.loads(to_json(r))
    assert d["schema"] == SCHEMA == "agescan.result/4"
    assert d["source"] == str(astronaut_path) and d["error"] == ""
    (face,) = d["faces"]
    assert set(face) >= {"box", "landmarks", "detector_score", "age", "interval", "p_minor", "age_group",
                         "model_id", "distribution", "flagged"}
    assert len(face["landmarks"]) == 5 and len(face["box"]) == 4
    assert abs(sum(face["distribution"]["probs"]) - 1) < 1e-3
    assert "distribution" not in to_dict(r, include_distribution=False)["faces"][0]
    assert d["provenance"]["model_sha256"] == r.provenance.model_sha256
    # the triage flag travels with the face, with the rule that set it
    assert face["flagged"] is r.faces[0].flagged and d["provenance"]["flag_threshold"] == estimator.flag_threshold


def test_csv_one_row_per_face_and_per_empty_image(estimator, astronaut_path):
    import numpy as np

    results = [estimator.predict(astronaut_path), estimator.predict(np.zeros((20, 20, 3), np.uint8))]
    rows = list(csv.DictReader(io.StringIO(csv_text(results))))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert len(rows) == 2
    assert rows[0]["face_index"] == "0" and float(rows[0]["age"]) > 0
    assert rows[0]["flagged"] == str(int(results[0].faces[0].flagged)) and rows[1]["flagged"] == ""
    assert rows[1]["source"] == "<array>" and rows[1]["face_index"] == "" and rows[1]["age"] == ""


def test_pose_and_framing_travel_in_json_and_csv_and_older_records_are_read(estimator, astronaut_path):
    from agescan.align import estimate_pose
    from agescan.results import face_pose

    r = estimator.predict(astronaut_path)
    face = to_dict(r)["faces"][0]
    assert face["framing"] == r.faces[0].framing == "aligned"
    assert face["pose"] == {"yaw": round(r.faces[0].yaw, 1), "roll": round(r.faces[0].roll, 1)}
    row = next(csv.DictReader(io.StringIO(csv_text([r]))))
    assert row["framing"] == "aligned" and float(row["yaw"]) == face["pose"]["yaw"]
    assert face_pose(face) == (face["pose"]["yaw"], face["pose"]["roll"], "aligned")
    # a version 3 record (no pose): the pose of its landmarks, and the only framing there was
    old = {k: v for k, v in face.items() if k not in ("pose", "framing")}
    p = estimate_pose(old["landmarks"])
    assert face_pose(old) == (p.yaw, p.roll, "aligned")
    assert face_pose({**old, "landmarks": []}) == (0.0, 0.0, "aligned")
