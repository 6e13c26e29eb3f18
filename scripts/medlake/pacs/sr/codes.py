"""The coded vocabulary of medlake's SRs: findings, measurement concepts, equipment purpose, weights status.

Finding codes (one per TorchXRayVision pathology) follow one rule, in order:

1. the SNOMED CT (SCT) or DICOM (DCM) concept DICOM PS3.16 itself uses for that finding in a
   chest context (checked against the PS3.16 concept tables pydicom ships, ``pydicom.sr``);
2. otherwise the SNOMED CT concept medlake used before (a valid SCT code PS3.16 does not list);
3. otherwise a code of medlake's private scheme ``99MEDLAKE``, declared in every SR's Coding
   Scheme Identification Sequence (no standard concept claims the label exactly).

``FINDING_SITES`` adds a finding site (TID 1501 "Finding Site") where the finding code alone is
not specific to the lung. docs/pacs.md has the full table with the reasons.
"""

from __future__ import annotations

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from highdicom.sr import CodedConcept

PRIVATE_SCHEME = "99MEDLAKE"

SCORE_CONCEPT = CodedConcept("246262008", "SCT", "Score")
NO_UNITS = CodedConcept("1", "UCUM", "no units")
PRESENT = CodedConcept("52101004", "SCT", "Present")
ABSENT = CodedConcept("272519000", "SCT", "Absent")
PROCEDURE_CHEST_XRAY = CodedConcept("399208008", "SCT", "Plain chest X-ray")
LUNG = CodedConcept("39607008", "SCT", "Lung")  # PS3.16 CID 6100

# CID 7005 "Contributing Equipment Purpose of Reference". DICOM has no "Processing Algorithm"
# code: Processing Equipment is the CID 7005 concept for software that produced the content
# (highdicom uses it for itself), and the one IHE AIR's algorithm item can carry.
PROCESSING_EQUIPMENT = CodedConcept("109102", "DCM", "Processing Equipment")

# Whether the model's weights are the real ones: coded (not only text) in every measurement group,
# next to each Present/Absent, so no finding can be read without it. LO code meanings: <= 64 chars.
WEIGHTS_STATUS = CodedConcept("WEIGHTSSTATUS", PRIVATE_SCHEME, "AI model weights status")
UNTRAINED_WEIGHTS = CodedConcept("UNTRAINED", PRIVATE_SCHEME, "Untrained random weights: output is not a diagnosis")
OFFICIAL_WEIGHTS = CodedConcept("OFFICIALWEIGHTS", PRIVATE_SCHEME, "Official published weights, SHA-256 verified")

FINDING_CONCEPTS: dict[str, CodedConcept] = {
    # PS3.16 has only the subtype "Plate-like atelectasis" (SCT 40779009): the general concept is kept.
    "Atelectasis": CodedConcept("46621007", "SCT", "Atelectasis"),
    "Consolidation": CodedConcept("95436008", "SCT", "Lung consolidation"),
    "Infiltration": CodedConcept("112121", "DCM", "Infiltrate"),  # PS3.16 CID 6102/6104
    "Pneumothorax": CodedConcept("36118008", "SCT", "Pneumothorax"),  # PS3.16 CID 6102/6105
    "Edema": CodedConcept("19242006", "SCT", "Pulmonary edema"),  # PS3.16 CID 3700
    "Emphysema": CodedConcept("87433001", "SCT", "Pulmonary emphysema"),
    # PS3.16's "Fibrosis" (SCT 112674009) is listed for prostate MRI only: the lung concept is kept.
    "Fibrosis": CodedConcept("51615001", "SCT", "Fibrosis of lung"),
    "Effusion": CodedConcept("60046008", "SCT", "Pleural effusion"),  # PS3.16 (anatomic/origin CIDs)
    "Pneumonia": CodedConcept("233604007", "SCT", "Pneumonia"),
    "Pleural_Thickening": CodedConcept("PLEURALTHICK", PRIVATE_SCHEME, "Pleural thickening"),
    # PS3.16's CID 12248 lists 287272002 as Cardiomegaly but its SNOMED table gives that code another
    # meaning (Enlarged septal foramen of heart): SNOMED CT's Cardiomegaly (disorder) is kept.
    "Cardiomegaly": CodedConcept("8186001", "SCT", "Cardiomegaly"),
    "Nodule": CodedConcept("27925004", "SCT", "Nodule"),  # PS3.16 CID 6102/6104
    "Mass": CodedConcept("4147007", "SCT", "Mass"),  # PS3.16 CID 6102/6104
    # NIH's "Hernia" label is mostly hiatal hernia, but not only: no concept claims it exactly.
    "Hernia": CodedConcept("HERNIA", PRIVATE_SCHEME, "Hernia (TorchXRayVision label)"),
    "Lung Lesion": CodedConcept("52988006", "SCT", "Lesion"),  # PS3.16 CID 7151 etc.; site: lung
    "Fracture": CodedConcept("72704001", "SCT", "Fracture"),
    "Lung Opacity": CodedConcept("112001", "DCM", "Opacity"),  # PS3.16 CID 6102/6104; site: lung
    "Enlarged Cardiomediastinum": CodedConcept("ENLCARDIOMED", PRIVATE_SCHEME, "Enlarged cardiomediastinum"),
}

FINDING_SITES: dict[str, CodedConcept] = {"Lung Lesion": LUNG, "Lung Opacity": LUNG}

PRIVATE_CODING_SCHEME = CodingSchemeIdentificationItem(
    designator=PRIVATE_SCHEME,
    name="medlake TorchXRayVision finding labels and model status",
    responsible_organization="medlake project",
)


def weights_status(trained: bool) -> CodedConcept:
    return OFFICIAL_WEIGHTS if trained else UNTRAINED_WEIGHTS
