"""The PS3.15 Basic Profile as medlake applies it: element by element against the standard's table,
and identifiers planted in every attribute group of a real DICOM, then searched for in the bytes.

The planted-group tests use only ``Deidentifier(key).deidentify_file(source, target)``, the API the
dicognito-based de-identifier had too: each of them failed on that code (the issue's leaks).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_has_tag, dictionary_keyword, dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

from medlake.dataset.deid import Deidentifier, Keys, Subject, ps315_table
from medlake.dataset.deid.descriptors import is_provably_clean
from medlake.dataset.phi_check import CheckScope, check_export

NAME, MRN, ACCESSION = "Plantedname^Johanna", "MRN-778899", "ACC-445566"
SECRETS = (b"Plantedname", b"Johanna", MRN.encode(), ACCESSION.encode(), b"19230405", b"St Planted Hospital")
KEY = b"k" * 32
SUBJECT = Subject("pt_0123456789abcdef0123456789abcdef", -400)
# set by the de-identifier after the table (PatientIdentityRemoved etc.) or rebuilt (file meta)
_SET_AFTER = {"PatientName", "PatientID", "PatientIdentityRemoved", "LongitudinalTemporalInformationModified"}
_SET_AFTER |= {"DeidentificationMethod", "DeidentificationMethodCodeSequence"}


def _value_for(vr: str) -> object:
    return {
        "DA": "20200102",
        "TM": "101010",
        "DT": "20200102101010",
        "PN": NAME,
        "CS": "PLANTED12345",
        "AE": "PLANTEDAE",
        "UI": "1.2.3.4.5.6789",
        "DS": "12.5",
        "IS": "42",
        "AS": "095Y",
        "US": 7,
        "SS": 7,
        "UL": 7,
        "SL": 7,
        "UV": 7,
        "SV": 7,
        "FL": 1.5,
        "FD": 1.5,
        "AT": 0x00100010,
        "UR": "http://planted.example",
        "SQ": Sequence([_item()]),
    }.get(vr, b"PLANTED!" if vr in ("OB", "OW", "UN", "OD", "OF", "OL", "OV") else f"{MRN} {NAME}")


def _item() -> Dataset:
    item = Dataset()
    item.PatientName = NAME
    return item


def _table_rows():
    for tag, name, basic, clean, dates in ps315_table.ROWS:
        if "x" in tag or tag[:4] in ("0000", "0002") or not dictionary_has_tag(int(tag, 16)):
            continue
        if dictionary_keyword(int(tag, 16)) in _SET_AFTER:
            continue
        yield pytest.param(int(tag, 16), basic, clean, dates, id=f"{tag} {name}")


@pytest.mark.parametrize(("tag", "basic", "clean", "dates"), list(_table_rows()))
def test_every_table_attribute_gets_its_action(tag, basic, clean, dates):
    vr = dictionary_VR(tag).split(" or ")[0]
    dataset = Dataset()
    dataset.add_new(tag, vr, _value_for(vr))
    Deidentifier(KEY).deidentify(dataset, SUBJECT)
    element = dataset.get(tag)
    value = None if element is None else element.value
    if vr == "SQ":
        if basic == "X":
            assert element is None
        elif basic in ("Z", "X/Z"):
            assert element is not None and len(value) == 0
        else:  # kept and recursed: the item's name is emptied
            assert element is not None and value[0].get("PatientName") in (None, "")
    elif dates == "C":  # Retain Longitudinal Temporal Information with Modified Dates
        expected = {"DA": "20181128", "DT": "20181128101010", "TM": "101010"}.get(vr)
        assert str(value) == expected if expected else value in (None, "")
    elif basic == "X":
        assert element is None
    elif basic in ("Z", "X/Z"):
        assert element is not None and value in (None, "", b"")
    elif basic == "U" or basic == "X/Z/U*":
        assert str(value).startswith("2.25.") and str(value) == Keys(KEY).uid("1.2.3.4.5.6789")
    elif basic in ("D", "X/D", "Z/D", "X/Z/D"):
        assert element is not None and value != _value_for(vr)
    else:
        pytest.fail(f"unexpected table action {basic!r}")


@pytest.mark.parametrize(
    ("keyword", "value", "kept"),
    [
        ("StudyDescription", "CHEST PA", True),
        ("SeriesDescription", "Chest 2 views, portable", True),
        ("ProtocolName", "THORAX AP SUPINE", True),
        ("StudyDescription", f"CHEST {MRN}", False),
        ("SeriesDescription", "PA Johanna", False),
        ("ImageComments", "CHEST 20210304", False),
    ],
)
def test_clean_descriptors_keep_only_provably_clean_values(keyword, value, kept):
    assert is_provably_clean(value) is kept
    dataset = Dataset()
    setattr(dataset, keyword, value)
    Deidentifier(KEY).deidentify(dataset, SUBJECT)
    assert (dataset.get(keyword) == value) is kept


# --- identifiers planted in every attribute group of a real DICOM --------------------------------


def _source_dicom() -> Path:
    return Path(get_testdata_file("CT_small.dcm"))


def _plant_group_0008(ds: Dataset) -> None:
    ds.StudyDescription = f"Chest for {NAME}"
    ds.SeriesDescription = f"{MRN} PA"
    ds.DerivationDescription = f"derived for {NAME}"
    ds.AccessionNumber = ACCESSION
    ds.InstitutionName = "St Planted Hospital"
    ds.ReferringPhysicianName = NAME
    ds.StudyDate = "19230405"


def _plant_group_0010(ds: Dataset) -> None:
    ds.PatientName = NAME
    ds.PatientID = MRN
    ds.PatientBirthDate = "19230405"
    ds.PatientComments = f"{NAME} {MRN}"
    ds.AdditionalPatientHistory = f"history of {NAME}"
    ds.EthnicGroup = "Plantedname"
    ds.PatientAge = "095Y"
    ds.PatientSize = "1.91"
    ds.PatientWeight = "123.4"
    ds.OtherPatientIDs = MRN


def _plant_group_0018(ds: Dataset) -> None:
    ds.ProtocolName = f"{NAME} chest"
    ds.DeviceSerialNumber = MRN
    ds.AcquisitionComments = NAME


def _plant_group_0020(ds: Dataset) -> None:
    ds.ImageComments = f"{NAME} {MRN}"
    ds.StudyID = MRN


def _plant_group_0032(ds: Dataset) -> None:
    ds.RequestedProcedureDescription = f"CXR {NAME}"
    ds.RequestingPhysician = NAME


def _plant_group_0040(ds: Dataset) -> None:
    step = Dataset()
    step.ScheduledProcedureStepDescription = f"{NAME} {MRN}"
    step.ScheduledPerformingPhysicianName = NAME
    ds.ScheduledProcedureStepSequence = Sequence([step])
    text = Dataset()
    text.ValueType = "TEXT"
    text.TextValue = f"patient {NAME} {MRN}"
    ds.ContentSequence = Sequence([text])
    ds.VerifyingOrganization = "St Planted Hospital"
    referenced = Dataset()
    referenced.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    referenced.ReferencedSOPInstanceUID = "1.2.3.778899"
    ds.ReferencedImageSequence = Sequence([referenced])


def _plant_overlays(ds: Dataset) -> None:
    ds.add_new(0x60000010, "US", 8)
    ds.add_new(0x60000011, "US", 8)
    ds.add_new(0x60000022, "LO", f"overlay of {NAME}")
    ds.add_new(0x60003000, "OW", (MRN + "\x00\x00").encode()[:8] * 1)


def _plant_curves(ds: Dataset) -> None:
    ds.add_new(0x50000022, "LO", f"curve of {NAME}")
    ds.add_new(0x50003000, "OB", MRN.encode() + b"\x00\x00")


def _plant_private(ds: Dataset) -> None:
    block = ds.private_block(0x0009, "PLANTED CREATOR", create=True)
    block.add_new(0x01, "LO", NAME)
    block.add_new(0x02, "UN", MRN.encode())


def _plant_file_meta(ds: Dataset) -> None:
    ds.file_meta.SourceApplicationEntityTitle = "PLANTEDNAME"
    ds.file_meta.SendingApplicationEntityTitle = "JOHANNA"
    ds.file_meta.PrivateInformationCreatorUID = "1.2.3"
    ds.file_meta.PrivateInformation = MRN.encode()
    ds.preamble = (MRN.encode() + b" ").ljust(128, b"\x00")


GROUPS = {
    "0008 identification, descriptions, institution": _plant_group_0008,
    "0010 patient, comments, characteristics": _plant_group_0010,
    "0018 acquisition, protocol, device serial": _plant_group_0018,
    "0020 image comments, study id": _plant_group_0020,
    "0032 requested procedure": _plant_group_0032,
    "0040 sequences, TextValue, verifying organization": _plant_group_0040,
    "60xx overlays": _plant_overlays,
    "50xx curves": _plant_curves,
    "private tags": _plant_private,
    "0002 file meta and preamble": _plant_file_meta,
}
_SECRET_TEXTS = {b"PLANTEDNAME", b"JOHANNA", b"MRN-778899", b"ACC-445566", b"19230405", b"ST PLANTED HOSPITAL"}


@pytest.mark.parametrize("plant", GROUPS.values(), ids=GROUPS.keys())
def test_identifiers_planted_in_each_group_are_gone(plant, tmp_path):
    ds = pydicom.dcmread(_source_dicom())
    plant(ds)
    source, target = tmp_path / "planted.dcm", tmp_path / "out" / "deid.dcm"
    ds.save_as(source, enforce_file_format=True)
    assert [s for s in _SECRET_TEXTS if s in source.read_bytes().upper()]  # the plant took
    Deidentifier(KEY).deidentify_file(source, target)
    data = target.read_bytes().upper()
    assert not [secret for secret in _SECRET_TEXTS if secret in data]
    out = pydicom.dcmread(target)
    assert out.PatientIdentityRemoved == "YES"
    codes = [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113107", "113105"]
    # the PHI check, given what the lake would know, finds nothing in the output and everything in the input
    scope = CheckScope(
        texts={"Plantedname": "patient name", "Johanna": "patient name", MRN: "PatientID", ACCESSION: "accession"},
        exam_dates={"exam": {dt.date(1923, 4, 5)}},
        file_exams={"deid.dcm": "exam", "planted.dcm": "exam"},
    )
    assert check_export(target.parent, scope) == []
    (tmp_path / "in").mkdir()
    source.rename(tmp_path / "in" / "planted.dcm")
    findings = check_export(tmp_path / "in", scope)
    assert findings and all(finding.file == "planted.dcm" for finding in findings)


def test_uids_are_remapped_consistently_and_dates_keep_intervals(tmp_path):
    first = pydicom.dcmread(_source_dicom())
    second = pydicom.dcmread(_source_dicom())
    second.SOPInstanceUID = second.SOPInstanceUID + ".2"
    second.StudyDate = (dt.date(2004, 1, 19) + dt.timedelta(days=30)).strftime("%Y%m%d")
    first.StudyDate = "20040119"
    deidentifier = Deidentifier(KEY)
    subject = Keys(KEY).subject("pt_same_patient")
    a, b = deidentifier.deidentify(first, subject), deidentifier.deidentify(second, subject)
    assert a.StudyInstanceUID == b.StudyInstanceUID and a.SOPInstanceUID != b.SOPInstanceUID
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    days = (dt.datetime.strptime(b.StudyDate, "%Y%m%d") - dt.datetime.strptime(a.StudyDate, "%Y%m%d")).days
    assert days == 30 and a.StudyDate != "20040119"
    other = Keys(KEY).subject("pt_another_patient")
    assert other.date_offset_days != subject.date_offset_days  # no lake-wide offset


def test_burned_in_annotation_is_refused(tmp_path):
    from medlake.dataset.deid import BurnedInAnnotationError

    ds = pydicom.dcmread(_source_dicom())
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(BurnedInAnnotationError):
        Deidentifier(KEY).deidentify(ds, SUBJECT)


def test_bare_dataset_stays_bare(tmp_path):
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.SOPInstanceUID = "1.2.3.4"
    ds.PatientName = NAME
    ds.file_meta = FileMetaDataset()
    source = tmp_path / "bare.dcm"
    ds.save_as(source, implicit_vr=True, little_endian=True, enforce_file_format=False)
    Deidentifier(KEY).deidentify_file(source, tmp_path / "out.dcm")
    data = (tmp_path / "out.dcm").read_bytes()
    assert data[128:132] != b"DICM" and b"Plantedname" not in data
