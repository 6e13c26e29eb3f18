"""The PACS + AI loop: Orthanc server and client, weights, inference, the intended-use gate, DICOM SR.

Public face: ``loop.run`` (``medlake pacs run``), ``watch.watch`` (``medlake pacs watch``),
``eligibility.evaluate`` (the gate), ``sr_builder.build_sr``, ``orthanc_server.OrthancServer``.
"""
