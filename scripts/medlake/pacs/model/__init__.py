"""The model: TorchXRayVision ``densenet121-res224-all``, its weights and how images are fed to it.

- :mod:`~medlake.pacs.model.weights`: finding and verifying the weights (sha256), or the explicit untrained stand-in;
- :mod:`~medlake.pacs.model.inference`: reading DICOMs as TorchXRayVision expects, batching, classifying.
"""
