# Serving image: the base package only (Flask, gunicorn, ONNX Runtime, numpy, pydantic), the
# exported models and the gunicorn config. No torch, no training code, no tests.
#   docker build -t rnn-inference-service .
#   docker run --rm -p 8000:8000 -p 8001:8001 rnn-inference-service   (HTTP, gRPC)
# tests/test_docker_image.py repeats the install and start steps below without Docker.

# ---- build: turn the source into a wheel --------------------------------------------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip wheel --no-deps --wheel-dir /wheels .

# ---- runtime ------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PORT=8000 \
    GRPC_PORT=8001 \
    HEALTH_PORT=8002 \
    MODEL_DIR=/app/exported_models

# Base dependencies only: no [train] extra, so no torch, at the versions pinned in
# requirements/serve.txt (make lock), which make test runs against too. They are installed in a
# layer of their own, before the project's wheel, so that a change to the code does not download
# them again. pip check fails the build if the lock lacks one the wheel needs; the import check,
# if a dependency ever starts pulling torch in.
COPY requirements/serve.txt /tmp/serve.txt
RUN pip install -r /tmp/serve.txt && rm /tmp/serve.txt
COPY --from=build /wheels /wheels
RUN pip install --no-deps /wheels/*.whl \
    && rm -rf /wheels \
    && pip check \
    && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app
WORKDIR /app
COPY gunicorn.conf.py ./
COPY exported_models ./exported_models
USER app

# HTTP (PORT), the Open Inference Protocol over gRPC (GRPC_PORT; set it empty to turn gRPC off)
# and the health probes on a port of their own (HEALTH_PORT: answered while every request thread
# is busy; point orchestrators' probes there).
EXPOSE 8000 8001 8002
# Ready = every model loaded and verified (slim has no curl, hence python); on HEALTH_PORT, or on
# PORT when it is set empty.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v2/health/ready' % (os.environ.get('HEALTH_PORT') or os.environ.get('PORT', '8000')), timeout=4)"]

CMD ["gunicorn", "-c", "gunicorn.conf.py", "service:create_app()"]
