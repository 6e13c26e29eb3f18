# medlake: the CLI (landing, dbt, PACS + TorchXRayVision loop) on CPU-only torch.
# Built and run with docker-compose.yml next to the official Orthanc image. No secrets are baked in:
# Orthanc credentials come from the environment at run time, model weights from a mounted volume.
FROM python:3.11-slim

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false \
    DO_NOT_TRACK=1 \
    HF_HUB_OFFLINE=1

WORKDIR /app

# torch/torchvision come from PyTorch's CPU index (same versions as requirements.lock, no CUDA);
# every other package is installed at its locked version, minus the CUDA-only wheels the lock
# carries for the default (GPU) torch build and the Spark extras (the image builds on DuckDB; it has
# no Java for `--engine spark`, which a Spark cluster runs instead: docs/scaling.md).
COPY requirements.lock ./
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu \
        torch==2.14.1 torchvision==0.29.1 \
    && grep -Ev '^(torch|torchvision|triton|nvidia-[A-Za-z0-9_.-]+|cuda-[A-Za-z0-9_.-]+|pyspark|py4j|dbt-spark|sqlparams)==' \
        requirements.lock \
        > /tmp/requirements.cpu.txt \
    && pip install --no-cache-dir -r /tmp/requirements.cpu.txt \
    && rm /tmp/requirements.cpu.txt

# The project itself (sources, dbt project); .dockerignore keeps data, venvs and git out.
COPY . .
RUN pip install --no-cache-dir --no-deps . \
    && groupadd --gid 10001 medlake \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin medlake \
    && mkdir -p /data /weights \
    && chown 10001:10001 /data /app

# Non-root, by number so the host can resolve it.
USER 10001:10001

ENV MEDLAKE_LAKE_DIR=/data/lake \
    MEDLAKE_XRV_WEIGHTS_DIR=/weights \
    ORTHANC_URL=http://orthanc:8042

ENTRYPOINT ["medlake"]
CMD ["--help"]
