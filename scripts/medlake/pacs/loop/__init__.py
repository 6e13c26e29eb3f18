"""The loop: ``pacs run`` (a folder of DICOMs) and ``pacs watch`` (Orthanc's ``/changes`` feed), siblings.

- :mod:`~medlake.pacs.loop.session`: opening a run (fail fast) and finishing it, shared by both;
- :mod:`~medlake.pacs.loop.state`: the one object a run's stages share;
- :mod:`~medlake.pacs.loop.run` / :mod:`~medlake.pacs.loop.watch`: the two front halves;
- :mod:`~medlake.pacs.loop.reporting`: the shared back half (classify, build SRs, store, land);
- :mod:`~medlake.pacs.loop.sources`: reading ``pacs run``'s input folder;
- :mod:`~medlake.pacs.loop.rows`: every row a PACS run lands in the lake, through the vocabularies;
- :mod:`~medlake.pacs.loop.sink`: landing those rows in small atomic batches;
- :mod:`~medlake.pacs.loop.summary`: what a run reports (text or JSON).
"""
