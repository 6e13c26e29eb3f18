"""medlake: a medical-imaging data lake with a PACS + AI loop."""

__version__ = "0.1.0"
