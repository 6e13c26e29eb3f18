"""The PACS + AI loop (needs ``pip install 'medlake[pacs]'``): Orthanc, TorchXRayVision, DICOM SR.

Public face (imported on first use, so ``import medlake.pacs`` is cheap and works without the extra)::

    run(input_dir, lake, ...) -> PacsRunSummary    medlake pacs run
    OrthancServer(port, storage)                   the local Orthanc process (medlake orthanc)
    OrthancClient(settings_or_url)                 upload, find, parents
    resolve(weights_dir, *, allow_untrained)       the weights, verified by sha256
    Classifier(choice)                             TorchXRayVision densenet121-res224-all
    build_sr(source_header, findings, identity)    one TID 1500 SR per image (highdicom)
"""

from medlake._lazy import lazy_exports

__all__ = ["Classifier", "OrthancClient", "OrthancServer", "PacsRunSummary", "build_sr", "resolve", "run"]
__getattr__ = lazy_exports(
    __name__,
    {
        "run": "medlake.pacs.loop",
        "PacsRunSummary": "medlake.pacs.loop",
        "OrthancServer": "medlake.pacs.orthanc_server",
        "OrthancClient": "medlake.pacs.orthanc_client",
        "resolve": "medlake.pacs.weights",
        "Classifier": "medlake.pacs.inference",
        "build_sr": "medlake.pacs.sr_builder",
    },
)
