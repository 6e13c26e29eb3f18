"""Patient identifiers stay out of the marts and query output (issue 9 item 9).

A synthetic lake with real DICOM headers (PatientID) and named labellers/reporters is landed and
built for real; every text column of every mart is searched for the raw identifiers. The marts
carry ``medlake.lake.pseudonyms.pseudonymise`` of them instead; ``patient_id`` is filled only in a
build that opted in, and switching that choice rebuilds everything.
"""

from __future__ import annotations

import json
import shutil

import duckdb
import pytest

from medlake.cli import main
from medlake.devtools import synth
from medlake.lake import landing, pseudonyms
from medlake.lake import layout as lake_layout
from medlake.warehouse import build_state, dbt_runner

KEY_HEX = "ab" * 32


@pytest.fixture(scope="module")
def pseudonym_key_env():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(pseudonyms.KEY_ENV_VAR, KEY_HEX)
        yield bytes.fromhex(KEY_HEX)


@pytest.fixture(scope="module")
def built_lake(pseudonym_key_env, tmp_path_factory):
    root = tmp_path_factory.mktemp("pseudonyms")
    synth.generate(root / "delivery", exams=300, seed=5, dicom_exams=12, progress=False, workers=1)
    lake = root / "lake"
    landing.land(root / "delivery", lake, workers=1, progress=False)
    dbt_runner.build(lake, docs=False, quiet=True)
    yield lake
    shutil.rmtree(dbt_runner.target_path_for(lake), ignore_errors=True)


def raw_patient_ids(lake) -> dict[str, str]:
    """Raw DICOM PatientID by SOP Instance UID."""
    rows = lake_layout.read_raw(lake, "dicom_instances").to_pylist()
    return {row["sop_instance_uid"]: row["patient_id"] for row in rows}


def raw_identifiers(lake) -> set[str]:
    """Every patient id and person name that arrived in the raw layer."""
    values = {row["patient_id"] for row in lake_layout.read_raw(lake, "dicom_instances").to_pylist()}
    values |= {row["labelled_by"] for row in lake_layout.read_raw(lake, "exam_labels").to_pylist()}
    values |= {row["reported_by"] for row in lake_layout.read_raw(lake, "medical_reports").to_pylist()}
    return {value for value in values if value}


def mart_text_values(lake) -> dict[str, set[str]]:
    """Every distinct text value of every mart column, by ``mart.column``."""
    found: dict[str, set[str]] = {}
    with duckdb.connect(str(lake_layout.warehouse_path(lake)), read_only=True) as connection:
        columns = connection.execute(
            "select table_name, column_name from information_schema.columns "
            "where table_schema = 'marts' and data_type = 'VARCHAR'"
        ).fetchall()
        for table, column in columns:
            rows = connection.execute(f'select distinct "{column}" from marts."{table}"').fetchall()
            found[f"{table}.{column}"] = {value for (value,) in rows if value is not None}
    return found


def test_marts_carry_pseudonyms_and_no_patient_ids_or_names(built_lake, pseudonym_key_env):
    identifiers = raw_identifiers(built_lake)
    assert any(value.startswith("SYNPAT") for value in identifiers)
    leaks = {column: values & identifiers for column, values in mart_text_values(built_lake).items()}
    assert {column: sorted(values)[:3] for column, values in leaks.items() if values} == {}

    dicoms = raw_patient_ids(built_lake)
    with duckdb.connect(str(lake_layout.warehouse_path(built_lake)), read_only=True) as connection:
        images = connection.execute(
            "select sop_instance_uid, patient_pseudonym, patient_id from marts.dim_images "
            "where sop_instance_uid is not null"
        ).fetchall()
    assert len(images) == len(dicoms) > 0
    for sop_instance_uid, patient_pseudonym, patient_id in images:
        assert patient_pseudonym == pseudonyms.pseudonymise(pseudonym_key_env, dicoms[sop_instance_uid])
        assert patient_id is None


def test_query_json_output_has_no_patient_ids(built_lake, capsys):
    exit_code = main(
        [
            "query",
            "chest-many-labels",
            "--lake",
            str(built_lake),
            "--min-labels",
            "1",
            "--limit",
            "1000",
            "--format",
            "json",
        ]
    )
    out = capsys.readouterr().out
    assert exit_code == 0
    assert not [value for value in raw_identifiers(built_lake) if value in out]
    with_files = [exam for exam in json.loads(out)["sample"] if exam["sop_instance_uid"]]
    assert with_files and all(exam["patient_pseudonym"].startswith("pt_") for exam in with_files)
    assert all("patient_id" not in exam for exam in with_files)


def test_patient_id_only_when_the_build_opts_in_and_switching_rebuilds(built_lake, pseudonym_key_env, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(built_lake, lake)
    try:
        opted_in = dbt_runner.build(lake, docs=False, quiet=True, include_patient_id=True)
        assert opted_in.plan.full_refresh
        state = build_state.read(lake_layout.warehouse_path(lake))
        assert state.include_patient_id is True
        dicoms = raw_patient_ids(lake)
        with duckdb.connect(str(lake_layout.warehouse_path(lake)), read_only=True) as connection:
            images = connection.execute(
                "select sop_instance_uid, patient_id from marts.dim_images where sop_instance_uid is not null"
            ).fetchall()
        assert images and all(patient_id == dicoms[uid] for uid, patient_id in images)

        # the same choice again stays incremental
        assert not dbt_runner.plan_build(lake, full_refresh=False, include_patient_id=True).full_refresh
        opted_out = dbt_runner.build(lake, docs=False, quiet=True)
        assert opted_out.plan.full_refresh
        assert not any(values & raw_identifiers(lake) for values in mart_text_values(lake).values())
    finally:
        shutil.rmtree(dbt_runner.target_path_for(lake), ignore_errors=True)
