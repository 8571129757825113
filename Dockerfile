# Two targets: `api` (slim, no torch) and `worker` (CUDA torch + CLIP).
FROM python:3.11-slim AS base
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY api api
COPY workers workers
COPY shared shared
COPY cli cli

FROM base AS api
RUN pip install "setuptools<81" . && pip uninstall -y milvus-lite
EXPOSE 8000
CMD ["assetrag", "api", "--host", "0.0.0.0", "--port", "8000"]

FROM base AS worker
RUN pip install "setuptools<81" ".[ml]"
CMD ["assetrag", "worker", "--queues", "embed,query,generate,default"]
