"""Orthanc, medlake's PACS: the local server process, its REST client, credentials, DICOM reception.

- :mod:`~medlake.pacs.orthanc.server`: the generated configuration, start, stop, status;
- :mod:`~medlake.pacs.orthanc.client`: upload, look up, parents, ``/changes`` (pyorthanc + retries);
- :mod:`~medlake.pacs.orthanc.credentials`: one random password per storage, kept 0600;
- :mod:`~medlake.pacs.orthanc.reception`: which modalities may send over DICOM;
- :mod:`~medlake.pacs.orthanc.identity`: is the file Orthanc holds the same instance as one on disk;
- :mod:`~medlake.pacs.orthanc.cli`: ``medlake orthanc start|stop|status``.
"""
