# canonic-gateway: the governed gateway, with the local llama.cpp model as its embedded default.
# Build:  docker build -t canonic-gateway .
# Run:    docker run -p 8080:8080 -e GATEWAY_JWT_SECRET=... canonic-gateway

FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake git \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY governance governance
COPY providers providers
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF"
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/venv/bin/pip install --no-cache-dir '.[local]'

FROM python:3.11-slim
# llama.cpp's CPU backend links the OpenMP runtime.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 canonic
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv/scope
# The governed scope: its documents are the policy the gateway compiles at startup.
COPY --chown=canonic:canonic CANON.md VASTAI.md VOCAB.md LEARNING.md ROADMAP.md COVERAGE.md README.md ./
COPY --chown=canonic:canonic canon canon
RUN mkdir -p var config && chown -R canonic:canonic var config
USER canonic
ENV PATH="/opt/venv/bin:${PATH}" PYTHONUNBUFFERED=1
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
# A non-loopback bind needs GATEWAY_JWT_SECRET (or GATEWAY_JWT_PUBLIC_KEY): the gateway refuses to start without one.
CMD ["canonic", "serve", "--host", "0.0.0.0", "--port", "8080", "--scope", "/srv/scope"]
