"""The raw lake: a delivery's files -> Parquet in ``LAKE/raw``, exactly once.

Public face (imported on first use)::

    land(input_dir, lake, ...) -> LandingSummary        medlake land
    scan_directory(input_dir, lake, ...) -> ScanSummary  medlake scan-dicom
    DeliveryRoot(path)   walk / open / read_bytes / hash_file under the symlink policy
    read_dicom(source)   the one hardened DICOM reader; read_header -> a dicom_instances row
    exclusive_lock(lake, busy_message=...)   the lake's one writer lock
    RAW_TABLES           the raw layer's Arrow schemas
"""

from medlake._lazy import lazy_exports

__all__ = [
    "RAW_TABLES",
    "DeliveryRoot",
    "LandingSummary",
    "ScanSummary",
    "exclusive_lock",
    "hash_stream",
    "land",
    "read_dicom",
    "read_header",
    "scan_directory",
]
__getattr__ = lazy_exports(
    __name__,
    {
        "RAW_TABLES": "medlake.lake.raw_schema",
        "DeliveryRoot": "medlake.lake.files",
        "hash_stream": "medlake.lake.files",
        "LandingSummary": "medlake.lake.summary",
        "land": "medlake.lake.landing",
        "ScanSummary": "medlake.lake.scanning",
        "scan_directory": "medlake.lake.scanning",
        "read_dicom": "medlake.lake.dicom_headers",
        "read_header": "medlake.lake.dicom_headers",
        "exclusive_lock": "medlake.lake.layout",
    },
)
