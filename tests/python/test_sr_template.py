"""The SR patched from a per-model template equals highdicom's SR, byte for byte, and is valid.

highdicom's builder (medlake.pacs.sr.builder.build_sr) stays the reference; the loop uses the
template (medlake.pacs.sr.template). Every template below is reused across sources: the first
source of a key builds it, every later one is patched into it.
"""

from __future__ import annotations

import datetime as dt
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom.data import get_testdata_files

from medlake.errors import DicomError
from medlake.pacs.sr import builder as sr_builder
from medlake.pacs.sr import template as sr_template
from test_sr import PATHOLOGIES, TRAINED, UNTRAINED, findings

pytestmark = pytest.mark.shared

RUN_AT = dt.datetime(2026, 12, 4, 21, 30, 5, tzinfo=dt.timezone(dt.timedelta(hours=-5)))


def varied_findings(index: int) -> list[sr_builder.Finding]:
    """Scores that differ per source (lengths of their DS encodings too), positives in other places."""
    return [
        sr_builder.Finding(
            pathology=name,
            score=((index * 7 + i * 13) % 100) / 97.0 + (1e-7 if i % 3 == 0 else 0.0),
            threshold=0.5,
            operating_point=0.5,
            is_positive=((index * 7 + i * 13) % 100) / 97.0 >= 0.5,
        )
        for i, name in enumerate(PATHOLOGIES)
    ]


def read_header(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, stop_before_pixels=True, force=True)


def assert_same_sr(templates: sr_template.SrTemplates, source, found, model, *, instance_number: int, run_at=RUN_AT):
    reference = sr_builder.build_sr(source, found, model, run_at=run_at, instance_number=instance_number)
    patched = templates.build(source, found, model, run_at=run_at, instance_number=instance_number)
    assert patched.data == reference.data, f"patched SR differs from highdicom's for {source.SOPInstanceUID}"
    assert patched == reference
    return patched


def test_shared_files_patched_sr_is_highdicoms_byte_for_byte_and_valid(shared_dicom_dir, tmp_path):
    files = sorted(shared_dicom_dir.rglob("*.dcm"))
    assert len(files) == 7
    templates = sr_template.SrTemplates()
    for index, path in enumerate(files):
        source = read_header(path)
        for model in (UNTRAINED, TRAINED):
            built = assert_same_sr(templates, source, varied_findings(index), model, instance_number=index + 1)
        out = tmp_path / f"{path.stem}.sr.dcm"
        out.write_bytes(built.data)
        report = sr_builder.validate(out)
        assert report.ok, (path.name, report.errors)
        assert hd.sr.srread(out).SOPInstanceUID == built.sop_instance_uid
    # One template per model x (Image Library or not, character set): the other sources were patched.
    shapes = {
        (sr_builder.describable_in_image_library(sr_builder.evidence(s)), s.get("SpecificCharacterSet"))
        for s in map(read_header, files)
    }
    assert len(templates._templates) == 2 * len(shapes) < 2 * len(files)


def test_synthetic_sources_patched_sr_is_highdicoms_byte_for_byte(tmp_path):
    from medlake.devtools.synth_dicom import write_chest_cr_series

    paths = write_chest_cr_series(tmp_path / "in", 12, seed=17, name="tpl", images_per_study=3)
    templates = sr_template.SrTemplates()
    for index, path in enumerate(paths):
        source = read_header(path)
        if index % 3 == 1:  # the SR's own times are stated in the source's offset: a header value
            source.TimezoneOffsetFromUTC = "+0100"
        built = assert_same_sr(templates, source, varied_findings(index), UNTRAINED, instance_number=1 + index * 37)
    out = tmp_path / "last.sr.dcm"
    out.write_bytes(built.data)
    assert sr_builder.validate(out).ok
    assert len(templates._templates) == 1


def test_pydicom_test_files_patched_sr_is_highdicoms_wherever_highdicom_builds_one():
    templates = sr_template.SrTemplates()
    compared = 0
    for name in sorted(get_testdata_files("*.dcm")):
        try:
            source = read_header(Path(name))
            reference = sr_builder.build_sr(source, findings(), UNTRAINED, run_at=RUN_AT, instance_number=2)
        except (DicomError, AttributeError, ValueError, TypeError):
            with pytest.raises(DicomError):  # what highdicom refuses, the template refuses too, with a reason
                templates.build(source, findings(), UNTRAINED, run_at=RUN_AT, instance_number=2)
            continue
        patched = templates.build(source, findings(), UNTRAINED, run_at=RUN_AT, instance_number=2)
        assert patched.data == reference.data, name
        compared += 1
    assert compared >= 30


def test_subset_of_pathologies_and_other_run_times_get_their_own_template(shared_dicom_dir):
    source = read_header(sorted((shared_dicom_dir / "chest").glob("*.dcm"))[0])
    templates = sr_template.SrTemplates()
    few = findings()[:5]  # an SR rebuilt from a lake holding only some pathologies
    assert_same_sr(templates, source, findings(), UNTRAINED, instance_number=1)
    assert_same_sr(templates, source, few, UNTRAINED, instance_number=1)
    later = dt.datetime(2027, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert_same_sr(templates, source, findings(), UNTRAINED, instance_number=9, run_at=later)
    with pytest.raises(DicomError, match="timezone-aware"):
        templates.build(source, findings(), UNTRAINED, run_at=dt.datetime(2026, 1, 1), instance_number=1)
    with pytest.raises(DicomError, match=">= 1"):
        templates.build(source, findings(), UNTRAINED, run_at=RUN_AT, instance_number=0)


def test_threads_sharing_templates_get_each_sources_own_sr(shared_dicom_dir):
    sources = [read_header(path) for path in sorted(shared_dicom_dir.rglob("*.dcm"))] * 3
    templates = sr_template.SrTemplates()
    with ThreadPoolExecutor(4) as pool:
        patched = list(
            pool.map(
                lambda item: templates.build(
                    item[1], varied_findings(item[0]), UNTRAINED, run_at=RUN_AT, instance_number=1
                ),
                enumerate(sources),
            )
        )
    for index, (source, built) in enumerate(zip(sources, patched, strict=True)):
        reference = sr_builder.build_sr(source, varied_findings(index), UNTRAINED, run_at=RUN_AT, instance_number=1)
        assert built.data == reference.data


def test_sr_worker_process_imports_only_what_it_uses(shared_dicom_dir):
    """A worker used to import pandas/pyarrow (via the loop's reporting module) to build an SR."""
    source = read_header(sorted((shared_dicom_dir / "chest").glob("*.dcm"))[0])
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=sr_template.init_worker) as pool:
        built, error, _ = pool.submit(sr_template.build_job, source, findings(), UNTRAINED, RUN_AT, 1).result()
        heavy = pool.submit(
            eval, "[m for m in ('pandas', 'pyarrow', 'torch', 'duckdb', 'httpx') if m in __import__('sys').modules]"
        ).result()
    assert error is None and built.data
    assert heavy == []
