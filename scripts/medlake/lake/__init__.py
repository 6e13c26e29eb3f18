"""The raw lake: layout, raw schema, delivery parsing, image files, DICOM headers, landing."""
