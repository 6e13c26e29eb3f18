"""`medlake bench`: every figure side by side, in one run, on the same synthetic data.

Each stage runs medlake and its alternative back to back on the same input, so the ratios
compare like with like on this machine. Parts that need Orthanc or torch can be skipped.
Nothing here asserts a target: the figures are reported, and docs/benchmarks.md discusses them.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from medlake.devtools import bench_baselines

# `medlake build` says what copying the live warehouse into the build file cost (warehouse_swap)
WAREHOUSE_COPY_LINE = re.compile(r"\(([\d,]+) MB copied in ([\d.]+) s\)")

# The baselines are measured on at most this many exam files (their rate, not a total): at 50 k files
# the DuckDB one-liner already needed 331 s and 11.8 GB, and pandas 58 s and 2.2 GB.
BASELINE_MAX_FILES = 20_000
DICOM_BENCH_FILES = 60
BENCH_DICOM_ROWS, BENCH_DICOM_COLUMNS = 2048, 1664
INFERENCE_BENCH_IMAGES = 32
ORTHANC_BENCH_FILES = 60
QUERY_REPEATS = 5
# Figures whose growth from a 10x smaller run (its results JSON) the bench reports as growth_<figure>.
GROWTH_FIGURES = (
    "land_s",
    "land_peak_rss_mb",
    "dbt_build_full_s",
    "dbt_build_peak_rss_mb",
    "dbt_build_incremental_s",
    "dbt_build_incremental_peak_rss_mb",
    "q3_median_ms",
    "q4_median_ms",
    "q3_open_connection_median_ms",
    "q4_open_connection_median_ms",
    "warehouse_mb",
    "dataset_export_s",
    "dataset_export_peak_rss_mb",
)


@dataclass
class BenchFigures:
    machine: dict
    figures: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def ratio(self, name: str, numerator: str, denominator: str) -> None:
        top, bottom = self.figures.get(numerator), self.figures.get(denominator)
        if isinstance(top, int | float) and isinstance(bottom, int | float) and bottom:
            self.figures[name] = round(top / bottom, 3)

    def to_dict(self) -> dict:
        return {"machine": self.machine, **self.figures, "notes": self.notes}

    def render(self) -> str:
        lines = [
            f"machine: {self.machine['cpu_count']} cores, {self.machine['memory_gb']} GB RAM, "
            f"{self.machine['platform']}, Python {self.machine['python']}",
        ]
        width = max((len(k) for k in self.figures), default=10)
        lines += [f"  {name:<{width}}  {value}" for name, value in self.figures.items()]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def machine_info() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def _measure_process(argv: list[str], env: dict | None = None) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run a command; return (wall seconds, peak RSS of its whole process tree in MB, result)."""
    start = time.perf_counter()
    process = psutil.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    peak = 0
    while process.poll() is None:
        try:
            tree = [process, *process.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - start
    result = subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
    return wall, peak / 2**20, result


def _medlake(*args: str) -> list[str]:
    return [sys.executable, "-m", "medlake", *args]


def _median_ms(function: Callable[[], object], repeats: int = QUERY_REPEATS) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        timings.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(timings), 2)


def _raw_exam_rows(lake: Path) -> int:
    import duckdb

    from medlake.warehouse import sql_text

    with duckdb.connect() as connection:
        return connection.execute(
            "select count(*) from read_parquet(?)", [sql_text.parquet_glob(lake / "raw" / "exams")]
        ).fetchone()[0]


def _unparseable_files(lake: Path) -> set[str]:
    """Files medlake quarantined whole (invalid JSON, not UTF-8): the bare one-liner aborts on them."""
    import duckdb

    from medlake.warehouse import sql_text

    with duckdb.connect() as connection:
        rows = connection.execute(
            "select distinct source_file from read_parquet(?) where record_position is null",
            [sql_text.parquet_glob(lake / "raw" / "quarantine")],
        ).fetchall()
    return {row[0] for row in rows}


def _tree_bytes(directory: Path) -> int:
    return sum(entry.stat().st_size for entry in directory.rglob("*") if entry.is_file())


def load_average() -> str:
    """The 1/5/15-minute load average, as `uptime` prints it: a shared machine inflates every time."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def add_growth(bench: BenchFigures, smaller: dict, source: str) -> None:
    """``growth_<figure>``: this run's figure over the same figure of a smaller run (``smaller``, its JSON)."""
    figures = bench.figures
    base_exams = smaller.get("exams")
    if not isinstance(base_exams, int) or base_exams >= figures.get("exams", 0):
        return
    figures["growth_from_exams"] = base_exams
    for name in GROWTH_FIGURES:
        top, bottom = figures.get(name), smaller.get(name)
        if isinstance(top, int | float) and isinstance(bottom, int | float) and bottom:
            figures[f"growth_{name}"] = round(top / bottom, 3)
    bench.notes.append(f"growth_* figures: this run over {source} ({base_exams:,} exams)")


def run(
    *,
    exams: int,
    workdir: Path,
    skip_orthanc: bool,
    skip_torch: bool,
    skip_dbt: bool,
    skip_spark: bool = False,
    records_per_file: int = 0,
) -> BenchFigures:
    from medlake.devtools import synth

    workdir = workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    bench = BenchFigures(machine=machine_info())
    figures = bench.figures
    figures["exams"] = exams
    figures["records_per_file"] = records_per_file or "1-4"
    figures["load_average_at_start"] = load_average()
    delivery = workdir / "delivery"
    lake = workdir / "lake"

    start = time.perf_counter()
    synth.generate(delivery, exams=exams, seed=7, dicom_exams=0, progress=False, records_per_file=records_per_file)
    figures["synth_s"] = round(time.perf_counter() - start, 2)
    input_bytes = _tree_bytes(delivery)
    figures["input_mb"] = round(input_bytes / 2**20, 1)
    figures["input_files"] = sum(1 for _ in delivery.rglob("*.json"))
    # Flush synth's dirty pages first: otherwise the first reader pays for the kernel's writeback.
    os.sync()

    _bench_landing(bench, delivery, lake, workdir, input_bytes)
    if not skip_dbt:
        _bench_dbt_and_queries(bench, lake, workdir, exams, skip_spark=skip_spark, records_per_file=records_per_file)
        _bench_dataset_export(bench, lake, workdir)
    _bench_dicom(bench, workdir)
    if not skip_torch:
        _bench_inference(bench, workdir)
    if not skip_orthanc:
        _bench_orthanc(bench, workdir)
    if not skip_orthanc and not skip_torch:
        from medlake.devtools import bench_pacs

        bench_pacs.run(bench.figures, bench.notes, workdir)
    figures["load_average_at_end"] = load_average()
    return bench


def _bench_landing(bench: BenchFigures, delivery: Path, lake: Path, workdir: Path, input_bytes: int) -> None:
    figures = bench.figures
    floor = bench_baselines.read_floor(delivery)
    figures["read_floor_s"] = round(floor.seconds, 3)
    figures["read_floor_parallel_s"] = round(bench_baselines.read_floor_parallel(delivery).seconds, 3)

    wall, peak_mb, result = _measure_process(
        _medlake("land", "--input", str(delivery), "--lake", str(lake), "--no-progress", "--format", "json")
    )
    if result.returncode != 0:
        raise RuntimeError(f"medlake land failed in the benchmark: {result.stderr[-2000:]}")
    records = _raw_exam_rows(lake)
    figures["land_s"] = round(wall, 3)
    figures["land_records"] = records
    figures["land_records_per_s"] = round(records / wall)
    figures["land_mb_per_s"] = round(input_bytes / 2**20 / wall, 1)
    figures["land_peak_rss_mb"] = round(peak_mb)

    exam_files = bench_baselines.list_json_files(delivery)
    sample = exam_files[:BASELINE_MAX_FILES]
    pandas = bench_baselines.pandas_landing(sample, workdir / "baseline" / "pandas_exams.parquet")
    figures["baseline_files"] = len(sample)
    figures["pandas_records_per_s"] = round(pandas.records / pandas.seconds)
    if len(sample) < len(exam_files):
        bench.notes.append(
            f"pandas and DuckDB baselines measured on the first {len(sample)} of {len(exam_files)} exam files (rates)"
        )

    copy = bench_baselines.duckdb_copy(
        sample, workdir / "baseline" / "duckdb_copy.parquet", skip_files=_unparseable_files(lake)
    )
    figures["duckdb_copy_records"] = copy.records
    figures["duckdb_copy_s"] = round(copy.seconds, 3)
    figures["duckdb_copy_records_per_s"] = round(copy.records / copy.seconds) if copy.records else 0
    if copy.error:
        bench.notes.append(f"duckdb bare copy failed: {copy.error}")
    # The one-liner only reads exam files; compare it to medlake's exam rate over the same files.
    bench.ratio("land_vs_pandas", "land_records_per_s", "pandas_records_per_s")
    bench.ratio("land_vs_duckdb_copy", "land_records_per_s", "duckdb_copy_records_per_s")
    bench.ratio("land_vs_read_floor", "land_s", "read_floor_s")
    bench.ratio("land_vs_read_floor_parallel", "land_s", "read_floor_parallel_s")


def _bench_dbt_and_queries(
    bench: BenchFigures, lake: Path, workdir: Path, exams: int, *, skip_spark: bool, records_per_file: int = 0
) -> None:
    from medlake.devtools import synth
    from medlake.warehouse import duckdb_memory, queries

    figures = bench.figures
    figures["duckdb_memory_limit"] = duckdb_memory.memory_limit()
    wall, peak_mb, result = _measure_process(_medlake("build", "--lake", str(lake), "--full-refresh", "--no-docs"))
    if result.returncode != 0:
        raise RuntimeError(f"dbt build failed in the benchmark: {result.stdout[-3000:]}{result.stderr[-2000:]}")
    figures["dbt_build_full_s"] = round(wall, 2)
    figures["dbt_build_peak_rss_mb"] = round(peak_mb)  # medlake + dbt + DuckDB (the process tree)

    figures["q3_median_ms"] = _median_ms(
        lambda: queries.covid_without_pneumonia(lake, month="2021-12", date_basis="label")
    )
    figures["q4_median_ms"] = _median_ms(
        lambda: queries.chest_many_labels(lake, body_part="Chest", min_labels=6, limit=20)
    )
    _bench_open_connection_queries(bench, lake)
    if not skip_spark:
        _bench_spark_build(bench, lake, "full")

    # A new day's delivery: 1 % new files (new exams plus some re-deliveries), landed and built incrementally.
    increment = workdir / "delivery_increment"
    synth.generate_increment(
        increment,
        exams=max(1, exams // 100),
        seed=8,
        base_exams=exams,
        base_seed=7,
        base_dicom_exams=0,
        records_per_file=records_per_file,
    )
    land_wall, _, land_result = _measure_process(
        _medlake("land", "--input", str(increment), "--lake", str(lake), "--no-progress", "--format", "json")
    )
    if land_result.returncode != 0:
        raise RuntimeError(f"incremental land failed: {land_result.stderr[-2000:]}")
    figures["land_incremental_s"] = round(land_wall, 2)
    wall, peak_mb, result = _measure_process(_medlake("build", "--lake", str(lake), "--no-docs"))
    if result.returncode != 0:
        raise RuntimeError(f"incremental dbt build failed: {result.stdout[-3000:]}{result.stderr[-2000:]}")
    figures["dbt_build_incremental_s"] = round(wall, 2)
    figures["dbt_build_incremental_peak_rss_mb"] = round(peak_mb)
    bench.ratio("dbt_incremental_vs_full", "dbt_build_incremental_s", "dbt_build_full_s")
    # what an incremental build pays so readers never see it half done: copying the live warehouse
    copied = WAREHOUSE_COPY_LINE.search(result.stderr)
    if copied:
        figures["warehouse_mb"] = float(copied.group(1).replace(",", ""))
        figures["warehouse_copy_s"] = float(copied.group(2))
    if not skip_spark:
        _bench_spark_build(bench, lake, "incremental")


def _bench_spark_build(bench: BenchFigures, lake: Path, kind: str) -> None:
    """`medlake build --engine spark` on the same lake as DuckDB's figure of the same kind, with the JVM's peak RSS."""
    from medlake.errors import MedlakeError
    from medlake.warehouse import spark

    try:
        spark.check_runtime()
    except MedlakeError as exc:
        bench.notes.append(f"spark builds skipped: {exc}")
        return
    argv = _medlake("build", "--lake", str(lake), "--engine", "spark", "--no-docs")
    if kind == "full":
        argv.append("--full-refresh")
    wall, jvm_peak_mb, result = _measure_jvm_process(argv)
    if result.returncode != 0:
        raise RuntimeError(f"spark {kind} build failed: {result.stdout[-3000:]}{result.stderr[-2000:]}")
    figures = bench.figures
    figures[f"spark_build_{kind}_s"] = round(wall, 2)
    figures[f"spark_jvm_peak_mb_{kind}"] = round(jvm_peak_mb)
    bench.ratio(f"spark_vs_duckdb_{kind}", f"spark_build_{kind}_s", f"dbt_build_{kind}_s")
    if kind == "full":
        figures["spark_driver_memory"] = os.environ.get("MEDLAKE_SPARK_DRIVER_MEMORY", "1g")


def _measure_jvm_process(argv: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run a command; return (wall seconds, peak RSS in MB of the largest Java process in its tree, result)."""
    start = time.perf_counter()
    process = psutil.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while process.poll() is None:
        try:
            for child in process.children(recursive=True):
                if child.name() == "java":
                    peak = max(peak, child.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.1)
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - start
    return wall, peak / 2**20, subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def _bench_dataset_export(bench: BenchFigures, lake: Path, workdir: Path) -> None:
    """`medlake dataset export` of three labels over the whole lake: the manifest is one DuckDB query.

    Measured twice: as by default (one reports/*.txt file per exam), and with --no-report-files
    (texts only in the manifest), which isolates the query + manifest + cards.
    """
    for name, extra in (("dataset_export", ()), ("dataset_export_no_report_files", ("--no-report-files",))):
        out = workdir / name
        wall, peak_mb, result = _measure_process(
            _medlake(
                "dataset", "export", "--lake", str(lake), "--out", str(out), "--labels", "Covid,Pneumonia,Edema",
                "--no-progress", "--format", "json", *extra,
            )
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"dataset export failed in the benchmark: {result.stderr[-2000:]}")
        summary = json.loads(result.stdout)
        bench.figures[f"{name}_s"] = round(wall, 2)
        bench.figures[f"{name}_peak_rss_mb"] = round(peak_mb)
        shutil.rmtree(out, ignore_errors=True)
    bench.figures["dataset_export_rows"] = summary["rows"]
    bench.notes.append(
        f"dataset export: {summary['rows']} manifest rows, images {summary['images']['by_status']} "
        "(the bench delivery has no image files: the figures are the manifest, reports and cards)"
    )


def _write_bench_dicoms(directory: Path, count: int) -> list[Path]:
    """Detector-sized synthetic chest CRs (2048x1664, 16-bit): decode cost like real ones."""
    from medlake.devtools import synth

    return synth.write_chest_cr_series(
        directory, count, seed=9, name="bench", rows=BENCH_DICOM_ROWS, columns=BENCH_DICOM_COLUMNS
    )


def _bench_open_connection_queries(bench: BenchFigures, lake: Path) -> None:
    """The same SQL on one open read-only connection: what an analyst's SQL session sees.

    ``q3/q4_median_ms`` above time `medlake query` as called (opening the warehouse each time).
    """
    import datetime as dt

    import duckdb

    from medlake.lake.layout import warehouse_path
    from medlake.warehouse import queries

    start, end = queries.month_bounds("2021-12")
    with duckdb.connect(str(warehouse_path(lake)), read_only=True) as connection:
        bench.figures["q3_open_connection_median_ms"] = _median_ms(
            lambda: connection.execute(queries.COVID_WITHOUT_PNEUMONIA_SQL["label"], [start, end]).fetchall()
        )
        bench.figures["q3_exam_basis_open_connection_median_ms"] = _median_ms(
            lambda: connection.execute(
                queries.COVID_WITHOUT_PNEUMONIA_SQL["exam"],
                [dt.datetime.combine(start, dt.time()), dt.datetime.combine(end, dt.time())],
            ).fetchall()
        )
        bench.figures["q4_open_connection_median_ms"] = _median_ms(
            lambda: (
                connection.execute(queries.MANY_LABELS_COUNT_SQL, ["Chest", 6]).fetchall(),
                connection.execute(queries.MANY_LABELS_SAMPLE_SQL, ["Chest", 6, 20]).fetchall(),
            )
        )


def _bench_dicom(bench: BenchFigures, workdir: Path) -> None:
    import pydicom

    from medlake.lake import dicom_headers

    files = _write_bench_dicoms(workdir / "dicom_images", DICOM_BENCH_FILES)
    start = time.perf_counter()
    for path in files:
        dicom_headers.read_header(path, file_size=path.stat().st_size)
    headers_s = time.perf_counter() - start
    start = time.perf_counter()
    for path in files:
        pydicom.dcmread(path).pixel_array  # noqa: B018 - decoding the pixels is the point
    full_s = time.perf_counter() - start
    figures = bench.figures
    figures["dicom_files"] = len(files)
    figures["dicom_size"] = f"{BENCH_DICOM_ROWS}x{BENCH_DICOM_COLUMNS}x16bit"
    figures["dicom_headers_per_s"] = round(len(files) / headers_s)
    figures["dicom_full_reads_per_s"] = round(len(files) / full_s)
    bench.ratio("dicom_headers_vs_full", "dicom_headers_per_s", "dicom_full_reads_per_s")


def _bench_inference(bench: BenchFigures, workdir: Path) -> None:
    from medlake.pacs.model import inference, weights

    files = sorted((workdir / "dicom_images").glob("*.dcm"))[:INFERENCE_BENCH_IMAGES]
    classifier = inference.Classifier(weights.resolve(None, allow_untrained=True))
    # Warm-up so one-time costs (thread pools, allocator) are not charged to either side.
    classifier.classify_paths(files[:2], batch_size=8)
    start = time.perf_counter()
    results = classifier.classify_paths(files, batch_size=8)
    end_to_end = time.perf_counter() - start
    batch = inference.preprocess_paths(files)
    start = time.perf_counter()
    classifier.forward(batch, batch_size=8)
    forward = time.perf_counter() - start
    figures = bench.figures
    figures["inference_images"] = len(results)
    figures["inference_images_per_s"] = round(len(files) / end_to_end, 2)
    figures["forward_only_images_per_s"] = round(len(files) / forward, 2)
    bench.ratio("inference_vs_forward_only", "inference_images_per_s", "forward_only_images_per_s")
    bench.notes.append(f"inference used {classifier.identity.describe()}")


def _bench_orthanc(bench: BenchFigures, workdir: Path) -> None:
    from medlake.pacs.orthanc.server import OrthancServer, find_free_port

    files = sorted((workdir / "dicom_images").glob("*.dcm"))[:ORTHANC_BENCH_FILES]
    workers_n = 4
    figures = bench.figures
    for label, workers in (("1_worker", 1), ("n_workers", workers_n)):
        storage = workdir / f"orthanc_{label}"
        with OrthancServer(port=find_free_port(), storage=storage) as server:
            client = server.client()
            start = time.perf_counter()
            outcomes = client.upload_files(files, workers=workers, progress=False)
            seconds = time.perf_counter() - start
        failed = [o for o in outcomes if not o.ok]
        if failed:
            bench.notes.append(f"orthanc upload ({label}): {len(failed)} failures, first: {failed[0]}")
        figures[f"orthanc_upload_{label}_per_s"] = round(len(files) / seconds, 1)
    figures["orthanc_workers_n"] = workers_n
    bench.ratio("orthanc_n_vs_1_worker", "orthanc_upload_n_workers_per_s", "orthanc_upload_1_worker_per_s")


if __name__ == "__main__":  # pragma: no cover - convenience for ad-hoc runs
    print(
        json.dumps(
            run(exams=2000, workdir=Path("data/bench"), skip_orthanc=True, skip_torch=True, skip_dbt=False).to_dict()
        )
    )
