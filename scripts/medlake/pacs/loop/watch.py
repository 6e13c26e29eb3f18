"""``medlake pacs watch``: classify what arrives in Orthanc, following its ``/changes`` feed.

Orthanc numbers every change; a series (or study) is announced ``StableSeries`` once no new
instance arrived for ``StableAge`` seconds. For each page of changes the watch lists the
instances of every stable series, runs the intended-use gate on their headers
(``/instances/{id}/simplified-tags``, no pixels moved), downloads only the accepted ones
(``/instances/{id}/file``, uncompressed, into a private spool directory; the next chunk downloads
while the model runs on this one), and hands them to the same back half as ``pacs run``
(already-reported check, classify, SRs patched from the model's template and stored as built,
predictions landed in small batches).

The cursor (the last change sequence handled) lives in the lake,
``LAKE/state/pacs_watch/<orthanc>.json``, and is replaced atomically only after the page's
predictions are landed and its SRs stored. A crash replays at most one page, and the replay
duplicates nothing: instances whose SR is in Orthanc and predictions in the lake are skipped
as ``already_reported``. One watch per lake and Orthanc at a time (a lock file beside the cursor).
medlake's own SRs come back through the feed: they are recognised and ignored (never classified,
not landed again: they are already in ``pacs_uploads``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from medlake.errors import DicomError, LakeError, OrthancError
from medlake.pacs import gate
from medlake.pacs.gate import GatePolicy, GateResult, SkipReason
from medlake.pacs.loop.reporting import Reporter
from medlake.pacs.loop.rows import model_run_row, skip_candidate_rows
from medlake.pacs.loop.session import finish_run, open_run
from medlake.pacs.loop.sources import hash_file, read_source_header
from medlake.pacs.loop.state import Candidate, FileOutcome, OrthancRef, RunOptions, RunState
from medlake.pacs.loop.summary import PacsRunSummary
from medlake.pacs.orthanc.client import DEFAULT_BREAKER_THRESHOLD, OrthancNotFound, OrthancUnreachable
from medlake.pacs.sr import builder as sr_builder
from medlake.vocab import ModelStatus, RunKind, RunStatus

CURSOR_DIR = Path("state") / "pacs_watch"
STABLE_CHANGES = {"series": "StableSeries", "study": "StableStudy"}
IN_PACS = "InPACS"


# --- the cursor --------------------------------------------------------------------------


def cursor_path(lake: Path, orthanc_url: str) -> Path:
    key = hashlib.sha256(orthanc_url.encode()).hexdigest()[:16]
    return lake / CURSOR_DIR / f"{key}.json"


def load_cursor(lake: Path, orthanc_url: str) -> int:
    path = cursor_path(lake, orthanc_url)
    try:
        return int(json.loads(path.read_text())["seq"])
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LakeError(f"watch cursor {path} is unreadable ({exc}); fix or remove it (then use --since)") from exc


def save_cursor(lake: Path, orthanc_url: str, seq: int, run_id: str) -> None:
    """Replace the cursor file atomically (write, fsync, rename, fsync the folder)."""
    path = cursor_path(lake, orthanc_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "orthanc_url": orthanc_url,
        "seq": seq,
        "run_id": run_id,
        "updated_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    fd, tmp = tempfile.mkstemp(prefix=".cursor-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@contextlib.contextmanager
def _single_watcher(lake: Path, orthanc_url: str) -> Iterator[None]:
    lock_path = cursor_path(lake, orthanc_url).with_suffix(".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LakeError(f"another `medlake pacs watch` follows {orthanc_url} into {lake}") from None
        yield


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM / Ctrl-C finish the page in hand, then stop (only the main thread can install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def request_stop(signum: int, _frame: object) -> None:
        stop.set()

    for sig in previous:
        signal.signal(sig, request_stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- one page of changes -----------------------------------------------------------------


def _is_ours(tags: dict) -> bool:
    return tags.get("Modality") == "SR" and tags.get("Manufacturer") == sr_builder.SR_MANUFACTURER


def _or_none(call, *args):
    """A lookup of something Orthanc may have deleted since the change: None then (any other error raises)."""
    try:
        return call(*args)
    except OrthancNotFound:
        return None


def _candidate(state: RunState, instance_id: str, tags: dict, verdict: GateResult, spool: Path) -> Candidate | None:
    """Download an accepted instance and read it with the hardened reader; None (recorded) if unusable."""
    label = f"orthanc:{instance_id}"
    path = spool / f"{instance_id}.dcm"
    try:
        path.write_bytes(state.client.download(instance_id))
        header = read_source_header(path)
        parents = state.client.parents(instance_id)
    except OrthancUnreachable:
        raise  # the page stops here; its cursor is not moved, so nothing is lost
    except (OrthancError, DicomError, OSError) as exc:
        state.update(label, model_status=ModelStatus.NOT_CLASSIFIED, skip_reason=SkipReason.UNREADABLE, note=str(exc))
        return None
    return Candidate(
        label=label,
        file_name=f"{header.SOPInstanceUID}.dcm",
        path=path,
        header=header,
        sha256=hash_file(path)[0],
        orthanc=OrthancRef(instance_id, parents.series_id, parents.study_id, parents.patient_id),
        gate=verdict,
    )


def process_page(state: RunState, reporter: Reporter, changes: list[dict], spool: Path) -> None:
    """Gate, download and report every instance of the page's stable series/studies."""
    client = state.client
    instance_ids: list[str] = []
    for change in changes:
        instance_ids += _or_none(client.child_instances, change["ResourceType"], change["ID"]) or []
    instance_ids = list(dict.fromkeys(instance_ids))
    with ThreadPoolExecutor(max(1, state.options.workers)) as pool:
        all_tags = list(pool.map(lambda instance_id: _or_none(client.simplified_tags, instance_id), instance_ids))
    skipped, accepted = [], []
    for instance_id, tags in zip(instance_ids, all_tags, strict=True):
        if tags is None or _is_ours(tags):  # deleted since the change was announced, or our own SR
            continue  # our own SR coming back through the feed: already recorded when stored
        label = f"orthanc:{instance_id}"
        verdict = gate.evaluate(tags, state.policy)
        state.record(
            FileOutcome(
                file=label,
                upload_status=IN_PACS,
                orthanc_id=instance_id,
                sop_instance_uid=tags.get("SOPInstanceUID"),
                model_status=ModelStatus.NOT_CLASSIFIED if verdict.accepted else ModelStatus.SKIPPED,
                skip_reason=verdict.reason,
                gate_flags=verdict.flags_text,
                note=verdict.detail,
            )
        )
        if verdict.accepted:
            accepted.append((instance_id, tags, verdict))
        else:
            skipped.append((label, None, tags, instance_id, verdict))
    state.sink.write({"pacs_gate_decisions": skip_candidate_rows(state, skipped)})
    # Every download is queued at once and the accepted instances are reported a chunk at a time,
    # so the next chunks download while the model runs on this one.
    chunk = max(state.options.batch_size, state.options.land_batch)
    pool = ThreadPoolExecutor(max(1, state.options.workers), thread_name_prefix="watch-download")
    downloads = [pool.submit(_candidate, state, *item, spool) for item in accepted]
    try:
        for start in range(0, len(downloads), chunk):
            candidates = [c for c in (f.result() for f in downloads[start : start + chunk]) if c is not None]
            try:
                reporter.report(candidates)
            finally:
                for candidate in candidates:
                    candidate.path.unlink(missing_ok=True)
            if state.stopping:
                break
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for future in downloads:  # downloaded but not reported (the page stopped): no PHI left behind
            if future.done() and not future.cancelled() and future.exception() is None and future.result():
                future.result().path.unlink(missing_ok=True)


# --- the watch ---------------------------------------------------------------------------


def watch(
    lake: Path,
    *,
    once: bool = False,
    level: str = "series",
    since: int | None = None,
    poll_s: float = 2.0,
    page_size: int = 10,
    weights_dir: Path | None = None,
    allow_untrained: bool = False,
    workers: int = 4,
    batch_size: int = 8,
    land_batch: int = 16,
    sr_workers: int | None = None,
    results_dir: Path = Path("results"),
    progress: bool = False,
    policy: GatePolicy | None = None,
    classifier=None,
    breaker_threshold: int = DEFAULT_BREAKER_THRESHOLD,
    stop: threading.Event | None = None,
) -> PacsRunSummary:
    """Follow Orthanc's changes into the lake; ``once``: handle the backlog and return."""
    wanted = STABLE_CHANGES[level]
    options = RunOptions(
        workers=workers, batch_size=batch_size, land_batch=land_batch, sr_workers=sr_workers, progress=progress
    )
    state = open_run(
        RunKind.WATCH,
        Path(lake),
        results_dir=Path(results_dir),
        options=options,
        policy=policy or GatePolicy(),
        weights_dir=weights_dir,
        allow_untrained=allow_untrained,
        classifier=classifier,
        breaker_threshold=breaker_threshold,
    )
    stop = stop or threading.Event()
    url = state.client.settings.url
    pages = 0
    start_cursor = cursor = since
    try:
        with _single_watcher(state.lake, url), _stop_on_signals(stop):
            cursor = since if since is not None else load_cursor(state.lake, url)
            start_cursor = cursor
            spool = Path(tempfile.mkdtemp(prefix="medlake-watch-"))  # 0700: downloaded images hold PHI
            reporter = Reporter(state)
            try:
                while not stop.is_set():
                    page = state.client.changes(cursor, limit=page_size)
                    changes = [c for c in page.get("Changes", []) if c.get("ChangeType") == wanted]
                    if changes:
                        landed = len(state.sink.parts)
                        process_page(state, reporter, changes, spool)
                        pages += 1
                        if state.stopping:
                            break  # the page is not done: the cursor stays where it was
                        if len(state.sink.parts) > landed:  # a progress row, so a killed watch is visible
                            state.sink.write({"model_runs": [model_run_row(state)]})
                    last = int(page.get("Last", cursor))
                    if last != cursor:
                        save_cursor(state.lake, url, last, state.run_id)
                        cursor = last
                    if page.get("Done", True):
                        if once:
                            break
                        stop.wait(poll_s)
            finally:
                reporter.close()
                shutil.rmtree(spool, ignore_errors=True)
    except OrthancError as exc:
        state.stop_reason = state.client.breaker.message or str(exc)
    finally:
        state.client.close()
    if stop.is_set():
        state.status = RunStatus.STOPPED
    elif state.stop_reason:
        state.status = RunStatus.ORTHANC_UNREACHABLE
    extra = {"cursor": {"from": start_cursor, "to": cursor}, "pages": pages}
    if not state.sink.parts:
        # Nothing arrived: no model_runs row (a cron job polling an idle PACS adds nothing to the lake).
        state.timings["total_s"] = time.perf_counter() - state.clock
        return PacsRunSummary.from_state(state, source=f"{url} /changes", extra=extra)
    return finish_run(state, source=f"{url} /changes", extra=extra)
