# syntax=docker/dockerfile:1
# vidmesh images: every service binary, the bundled vidmesh-tiny model, and libonnxruntime from the PyPI wheel.
#   docker build --target cpu -t ghcr.io/vidmesh/vidmesh:0.1.0 .
#   docker build --target gpu -t ghcr.io/vidmesh/vidmesh:0.1.0-cuda .
# Both run as the non-root user 65532 with nothing written outside /tmp and /var/cache/vidmesh (the manifests mount
# emptyDirs there; the root filesystem is read-only). The services are /usr/local/bin/vidmesh-<service>; the
# `vidmesh` CLI is there too. Each image carries the FFmpeg libraries its binaries were built against (Debian's 5.1
# for cpu, Ubuntu 24.04's 6.1 for gpu).

ARG RUST_VERSION=1.90
ARG ORT_VERSION=1.31.1

# ---- build: the Rust binaries (release, locked), against Debian bookworm's FFmpeg 5.1 ----
FROM rust:${RUST_VERSION}-bookworm AS build
# FFmpeg's libraries and headers (video decoding), pkg-config and libclang (their bindings are generated at build).
RUN apt-get update && apt-get install -y --no-install-recommends \
      libavformat-dev libavcodec-dev libswscale-dev libavutil-dev pkg-config libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/build-binaries.sh /out

# ---- build-gpu: the same binaries against Ubuntu 24.04's FFmpeg 6.1, the libraries the CUDA image has ----
FROM nvcr.io/nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04 AS build-gpu
ARG RUST_VERSION
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl build-essential \
      libavformat-dev libavcodec-dev libswscale-dev libavutil-dev pkg-config libclang-dev \
 && rm -rf /var/lib/apt/lists/* \
 && curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain ${RUST_VERSION}
ENV PATH=/root/.cargo/bin:$PATH
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/.cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/build-binaries.sh /out

# ---- libonnxruntime out of the onnxruntime / onnxruntime-gpu wheel (our fetch script, pip only) ----
FROM python:3.11-slim-bookworm AS ort-cpu
COPY scripts/fetch-onnxruntime.sh /fetch.sh
RUN VIDMESH_CACHE=/ort /fetch.sh && mv /ort/onnxruntime-cpu-* /ort/lib

FROM python:3.11-slim-bookworm AS ort-gpu
COPY scripts/fetch-onnxruntime.sh /fetch.sh
RUN VIDMESH_CACHE=/ort /fetch.sh --gpu && mv /ort/onnxruntime-cuda-* /ort/lib

# ---- cpu: Debian slim ----
FROM debian:bookworm-slim AS cpu
ARG ORT_VERSION
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
      libavformat59 libavcodec59 libswscale6 libavutil57 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
COPY --from=ort-cpu /ort/lib/ /opt/vidmesh/lib/
COPY models/vidmesh-tiny/ /opt/vidmesh/models/vidmesh-tiny/
# No VIDMESH__ variables here: they would override the mounted config file (environment beats file).
ENV ORT_DYLIB_PATH=/opt/vidmesh/lib/libonnxruntime.so.${ORT_VERSION}
USER 65532:65532
EXPOSE 50051 8080 9090
ENTRYPOINT ["/usr/local/bin/vidmesh"]
CMD ["--help"]

# ---- gpu: the CUDA 13 runtime with cuDNN, onnxruntime-gpu's libraries (CUDA execution provider) ----
FROM nvcr.io/nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04 AS gpu
ARG ORT_VERSION
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
      libavformat60 libavcodec60 libswscale7 libavutil58 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build-gpu /out/ /usr/local/bin/
COPY --from=ort-gpu /ort/lib/ /opt/vidmesh/lib/
COPY models/vidmesh-tiny/ /opt/vidmesh/models/vidmesh-tiny/
# The CUDA provider library sits beside libonnxruntime; the manifests select it (onnxruntime.execution_provider).
ENV ORT_DYLIB_PATH=/opt/vidmesh/lib/libonnxruntime.so.${ORT_VERSION} \
    LD_LIBRARY_PATH=/opt/vidmesh/lib
USER 65532:65532
EXPOSE 50051 8080 9090
ENTRYPOINT ["/usr/local/bin/vidmesh"]
CMD ["--help"]
