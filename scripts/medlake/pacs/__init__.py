"""The PACS + AI loop: Orthanc server and client, weights, inference, DICOM SR, the loop."""
