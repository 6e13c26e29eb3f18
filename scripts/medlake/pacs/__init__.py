"""The PACS + AI loop (needs ``pip install 'medlake[pacs]'``): Orthanc, TorchXRayVision, DICOM SR.

Public face (imported on first use, so ``import medlake.pacs`` is cheap and works without the extra)::

    run(input_dir, lake, ...) -> PacsRunSummary    medlake pacs run
    watch(lake, *, once, ...) -> PacsRunSummary    medlake pacs watch (Orthanc's /changes feed)
    evaluate(header, policy) -> GateResult         the intended-use gate (GatePolicy widens/narrows it)
    OrthancServer(port, storage)                   the local Orthanc process (medlake orthanc)
    OrthancClient(settings_or_url)                 upload, find, parents, changes
    resolve(weights_dir, *, allow_untrained)       the weights, verified by sha256
    Classifier(choice)                             TorchXRayVision densenet121-res224-all
    build_sr(source_header, findings, identity)    one TID 1500 SR per image (highdicom)
"""

from medlake._lazy import lazy_exports

__all__ = [
    "Classifier",
    "GatePolicy",
    "OrthancClient",
    "OrthancServer",
    "PacsRunSummary",
    "build_sr",
    "evaluate",
    "resolve",
    "run",
    "watch",
]
__getattr__ = lazy_exports(
    __name__,
    {
        "run": "medlake.pacs.loop.run",
        "PacsRunSummary": "medlake.pacs.loop.summary",
        "watch": "medlake.pacs.loop.watch",
        "evaluate": "medlake.pacs.gate",
        "GatePolicy": "medlake.pacs.gate",
        "OrthancServer": "medlake.pacs.orthanc.server",
        "OrthancClient": "medlake.pacs.orthanc.client",
        "resolve": "medlake.pacs.model.weights",
        "Classifier": "medlake.pacs.model.inference",
        "build_sr": "medlake.pacs.sr.builder",
    },
)
