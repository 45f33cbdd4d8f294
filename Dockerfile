# curation-server and the curation CLI in one image.
#
#   podman build --format docker -t curation:dev .      (or: docker build -t curation:dev .)
#   docker run -v curation-data:/var/lib/curation -p 50051:50051 -p 9090:9090 \
#     -v ./admin-token:/run/secrets/admin-token:ro curation:dev \
#     --listen=0.0.0.0:50051 --data-dir=/var/lib/curation --metrics-listen=0.0.0.0:9090 \
#     --admin-token-file=/run/secrets/admin-token
#
# --format docker matters with podman: the OCI image format has no HEALTHCHECK, and podman
# drops it silently from OCI images. deploy/verify-image.sh builds and checks this image
# without a container engine or a registry.

# ---------------------------------------------------------------------------------------
# Build stage: the same Debian packages and CMake build as a developer's machine.
FROM debian:bookworm AS build

# scripts/deps is copied alone first so that its (slow) package layer stays cached while
# the sources change.
COPY scripts/deps /src/scripts/deps
RUN /src/scripts/deps && rm -rf /var/lib/apt/lists/*

COPY . /src
WORKDIR /src
# Two cores are typical of the machines this is built on; raise JOBS where there are more.
ARG JOBS=2
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release >/dev/null \
 && cmake --build /build -j"${JOBS}" --target curation-server curation \
 && install -D -s -m 0755 /build/bin/curation-server /out/usr/local/bin/curation-server \
 && install -D -s -m 0755 /build/bin/curation /out/usr/local/bin/curation

# ---------------------------------------------------------------------------------------
# Runtime stage: the shared libraries the two binaries link, nothing else (FAISS is
# linked statically). The list is what ldd reports, mapped to Debian packages.
FROM debian:bookworm-slim

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="curation" \
      org.opencontainers.image.description="gRPC service that stores LLM preference datasets and selects the most informative subsets for DPO, KTO and reward-model training" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="debian:bookworm-slim" \
      org.opencontainers.image.documentation="README.md (sections 'Container image' and 'Kubernetes')"

RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libabsl20220623 libc-ares2 libcivetweb1 libgflags2.2 libgomp1 libgrpc++1.51 libgrpc29 \
      libopenblas0-pthread libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 libprotobuf32 \
      libre2-9 librocksdb7.8 libssl3 zlib1g >/dev/null \
 && rm -rf /var/lib/apt/lists/*

COPY --from=build /out/ /

# A missing shared library should fail the build, not the first start in production.
RUN if ldd /usr/local/bin/curation-server /usr/local/bin/curation | grep 'not found'; then \
      exit 1; fi

# A fixed numeric uid: Kubernetes can only enforce runAsNonRoot against a numeric USER, and
# volumes prepared elsewhere can be chowned to it.
RUN groupadd --system --gid 10001 curation \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/curation --no-create-home \
      --shell /usr/sbin/nologin curation \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/curation
USER 10001:10001
VOLUME ["/var/lib/curation"]
WORKDIR /var/lib/curation

# 50051: gRPC (curation.v1, admin, grpc.health.v1, reflection). 9090: Prometheus /metrics.
EXPOSE 50051 9090
# The CLI's own address default; the health check and `docker exec ... curation` use it.
ENV CURATION_SERVER=127.0.0.1:50051

# Asks grpc.health.v1 (SERVING only once every dataset's index is loaded, NOT_SERVING while
# draining). The start period covers index loading of large datasets. With --tls-cert, set
# CURATION_TLS_CA so that the check speaks TLS (the certificate must name 127.0.0.1).
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
  CMD ["curation", "health"]

ENTRYPOINT ["curation-server"]
CMD ["--listen=0.0.0.0:50051", "--data-dir=/var/lib/curation", "--metrics-listen=0.0.0.0:9090"]
