"""Developer tools: synthetic deliveries, benchmarks and their baselines, the demo.

Public face (imported on first use)::

    generate(out, *, exams, seed, dicom_exams) -> SynthSummary       medlake synth
    generate_increment(out, *, exams, seed, base_exams, ...)          a later delivery on top
    write_chest_cr(path, *, seed, exam_id, ...)                       one synthetic chest CR DICOM
"""

from medlake._lazy import lazy_exports

__all__ = ["SynthSummary", "generate", "generate_increment", "write_chest_cr"]
__getattr__ = lazy_exports(
    __name__,
    {
        "SynthSummary": "medlake.devtools.synth",
        "generate": "medlake.devtools.synth",
        "generate_increment": "medlake.devtools.synth",
        "write_chest_cr": "medlake.devtools.synth_dicom",
    },
)
