"""medlake: a medical-imaging data lake with a PACS + AI loop.

From Python (read-only; see :mod:`medlake.handle`)::

    import medlake
    lake = medlake.open("data/demo/lake")
    lake.sql("select count(*) from marts.fct_exams")
"""

from medlake._lazy import lazy_exports

__version__ = "0.1.0"
__all__ = ["Lake", "__version__", "open"]
__getattr__ = lazy_exports(__name__, {"open": "medlake.handle", "Lake": "medlake.handle"})
