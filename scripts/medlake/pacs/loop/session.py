"""What ``pacs run`` and ``pacs watch`` share: opening a run (fail fast) and finishing it.

:func:`open_run` checks the weights (official digest or ``--allow-untrained-weights``), that Orthanc
answers with the configured credentials and that the lake is writable, then loads the model; it
raises :class:`~medlake.errors.MedlakeError` subclasses before anything is written.
:func:`finish_run` lands the final ``model_runs`` row and returns the summary.
"""

from __future__ import annotations

import time
from pathlib import Path

from medlake.lake import layout as lake_io
from medlake.pacs import gate
from medlake.pacs.gate import GatePolicy
from medlake.pacs.loop.rows import model_run_row
from medlake.pacs.loop.sink import LakeSink
from medlake.pacs.loop.state import RunOptions, RunState, new_run_id, utc_now
from medlake.pacs.loop.summary import PacsRunSummary
from medlake.pacs.model import weights
from medlake.pacs.orthanc.client import DEFAULT_BREAKER_THRESHOLD, CircuitBreaker, OrthancClient, OrthancSettings
from medlake.vocab import RunKind, RunStatus


def open_run(
    kind: RunKind,
    lake: Path,
    *,
    results_dir: Path,
    options: RunOptions,
    policy: GatePolicy,
    weights_dir: Path | None,
    allow_untrained: bool,
    classifier=None,
    breaker_threshold: int = DEFAULT_BREAKER_THRESHOLD,
) -> RunState:
    """Stage 0: weights, Orthanc, lake, model. Raises MedlakeError subclasses before anything is written."""
    from medlake.pacs.model import inference  # torch: imported when a run opens, not when the CLI starts

    clock = time.perf_counter()
    started_at = utc_now()
    choice = (
        classifier.choice if classifier is not None else weights.resolve(weights_dir, allow_untrained=allow_untrained)
    )
    client = OrthancClient(
        OrthancSettings.from_env(),
        max_connections=max(4, options.workers),
        breaker=CircuitBreaker(breaker_threshold),
        retries=2,
    )
    try:
        client.system()
        lake_io.init_lake(lake)
        gate.lake_taxonomy()  # the seed must be readable before anything is uploaded
        mark = time.perf_counter()
        classifier = classifier or inference.Classifier(choice)
        model_load_s = time.perf_counter() - mark
    except BaseException:
        client.close()
        raise
    run_id = new_run_id(started_at)
    state = RunState(
        kind=kind,
        lake=Path(lake),
        results_dir=Path(results_dir),
        options=options,
        policy=policy,
        client=client,
        choice=choice,
        classifier=classifier,
        sink=LakeSink(Path(lake), run_id, started_at.date()),
        started_at=started_at,
        clock=clock,
        run_id=run_id,
    )
    state.sink.load_predicted(classifier.identity.weights_sha256)
    state.timings["startup_s"] = mark - clock
    state.timings["model_load_s"] = model_load_s
    return state


def finish_run(state: RunState, *, source: str, extra: dict | None = None) -> PacsRunSummary:
    """The model_runs row (its final version) and the summary."""
    state.timings["total_s"] = time.perf_counter() - state.clock
    if state.client.breaker.is_open and not state.stop_reason:
        state.stop_reason = state.client.breaker.message  # it opened while the last SRs were stored
    if state.status == RunStatus.RUNNING:
        state.status = RunStatus.ORTHANC_UNREACHABLE if state.stop_reason else RunStatus.FINISHED
    state.sink.write({"model_runs": [model_run_row(state)]})
    return PacsRunSummary.from_state(state, source=source, extra=extra)
