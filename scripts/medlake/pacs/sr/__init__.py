"""The DICOM SR medlake writes per classified image (TID 1500), and its judge.

- :mod:`~medlake.pacs.sr.builder`: the SR itself (highdicom);
- :mod:`~medlake.pacs.sr.codes`: its coded vocabulary (SNOMED CT / DCM, the private scheme where none);
- :mod:`~medlake.pacs.sr.numbering`: InstanceNumber within each SR series;
- :mod:`~medlake.pacs.sr.validation`: dciodvfy as the judge of every SR.
"""
