"""Clean Descriptors, only where it can be proved: a fixed vocabulary of imaging words.

A descriptor (Study Description, Series Description, Protocol Name, ...) is kept only when every
word of it is in :data:`SAFE_WORDS` (body parts, views, modalities, positions and the like: words
that name no person, place or date) or is a number of at most two digits. Anything else
(a name, an ID, a date, a word medlake does not know) and the attribute gets its Basic Profile
action instead: removed, emptied or a dummy value. This is cleaning by proof, not by guessing.
"""

from __future__ import annotations

import re

SAFE_WORDS = frozenset(
    """
    ABDOMEN ABDOMINAL AC ACUTE ADULT AND ANKLE ANTERIOR AP ARM AXIAL AXILLA BABYGRAM BILATERAL BONE
    BONES BRAIN BREAST CALCANEUS CERVICAL CHEST CLAVICLE COCCYX CONTRAST CORONAL CR CT CXR DECUBITUS
    DEFAULT DELAYED DIGITAL DX ELBOW ERECT EXPIRATION EXTREMITY FACE FEMUR FINGER FINGERS FOLLOW FOOT
    FOREARM FRONTAL HAND HEAD HEEL HIP HUMERUS IMAGE IMAGES INSPIRATION KNEE KUB L LAT LATERAL LEFT LEG
    LL LOW LOWER LUMBAR LUNG LUNGS MANDIBLE MG MR MRI NECK NO OBLIQUE OF ONE PA PEDIATRIC PEDS PELVIS
    PORT PORTABLE POSTERIOR PRONE R RIB RIBS RIGHT RL ROUTINE SACRUM SAGITTAL SCAPULA SCOUT SEMI
    SERIES SHOULDER SINGLE SINUS SINUSES SKULL SOFT SPINE SPOT STANDARD STANDING STERNUM STUDY SUPINE
    THORACIC THORAX THUMB TIBIA TISSUE TOE TOES TWO UP UPPER UPRIGHT US VIEW VIEWS W WITH WITHOUT WO
    WRIST X XR XRAY RAY RAYS
    """.split()  # noqa: SIM905 (a word list reads better as text)
)
_WORD = re.compile(r"[A-Za-z0-9]+")


def is_provably_clean(value: object) -> bool:
    """True when every word of every value is in the vocabulary (or a number of at most two digits)."""
    values = value if isinstance(value, list | tuple) else [value]
    for item in values:
        if not isinstance(item, str):
            return False  # only text is proved; anything else takes the basic action
        for word in _WORD.findall(item):
            if not (word.upper() in SAFE_WORDS or (word.isdigit() and len(word) <= 2)):
                return False
    return True
