# syntax=docker/dockerfile:1
#
# One image for every Mailroom process: the workers (poller, classifier, rag-generator, sender,
# doc-ingester, upload-api) and the operator CLI (mailroom). The process is picked by the
# command, e.g. `docker run IMAGE classifier` or `command: ["classifier"]` in Kubernetes, so a
# release is one build and one tag, and every stage runs exactly the same code.
#
#   docker build -t mailroom:dev .
#
# No config file is copied: config/default.toml is compiled into the binaries
# (pipeline_core::settings::DEFAULT_CONFIG), and deployments override it with
# MAILROOM__SECTION__KEY environment variables (or a file named by MAILROOM_CONFIG).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder

# Every binary of the workspace that goes into the image. tests/e2e/deploy.rs fails when a
# workspace binary is missing here, so a new worker cannot be forgotten.
ARG BINARIES="poller classifier rag-generator sender doc-ingester upload-api mailroom"

WORKDIR /src
# The whole workspace: sqlx::migrate! embeds migrations/, the settings embed config/, the
# classifier's tests embed crates/classifier/data/. .dockerignore keeps target/ and .git/ out.
COPY . .

# The cargo registry, git checkouts and target/ live in BuildKit cache mounts: a rebuild after a
# source change recompiles only the changed crates instead of the whole dependency tree. Because
# target/ is a cache mount (not part of the layer), the binaries are copied out to /out in the
# same step. --locked: build exactly Cargo.lock, fail rather than resolve new versions.
# The slim Rust image already has gcc and libc6-dev, which is all `ring` (rustls) needs; there
# is no OpenSSL, no pkg-config and no database at build time (sqlx queries are checked at run
# time, not with the query! macros).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --workspace --bins \
 && mkdir -p /out \
 && for bin in ${BINARIES}; do \
      if [ ! -x "target/release/${bin}" ]; then \
        echo "binary ${bin} was not built (is it still a workspace binary?)" >&2; exit 1; \
      fi; \
      cp "target/release/${bin}" /out/; \
    done

# ---------------------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime

# ca-certificates: the system trust store, for anything that uses it (the HTTP clients also
#   bundle the Mozilla roots through webpki-roots, so provider APIs work either way).
# curl: only for the docker compose healthchecks (`curl -f http://127.0.0.1:9090/readyz`);
#   Kubernetes probes are made by the kubelet and need nothing in the image.
# tini: a minimal init as PID 1. The doc-ingester extracts PDFs in a child process of itself
#   (the same binary, started again from std::env::current_exe() with an address-space
#   limit, so it needs no other program and no shell); tini
#   reaps any child the kernel re-parents to PID 1 and forwards SIGTERM, so the workers' own
#   graceful drain still runs. Nothing else is needed at run time: the binaries link only
#   against glibc, and PDF extraction is pure Rust (pdf-extract/lopdf).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl tini \
 && rm -rf /var/lib/apt/lists/*

# A fixed, unprivileged user. The numeric id lets Kubernetes check runAsNonRoot and lets
# fsGroup make mounted volumes writable.
RUN groupadd --system --gid 10001 mailroom \
 && useradd --system --uid 10001 --gid mailroom --home-dir /data --shell /usr/sbin/nologin mailroom \
 && mkdir -p /data/uploads /data/mailbox /data/outbox \
 && chown -R mailroom:mailroom /data

COPY --from=builder /out/ /usr/local/bin/

# Paths inside the image, so relative defaults (./data/...) never depend on the working
# directory. A named volume mounted on /data/uploads starts out owned by mailroom (Docker copies
# the image directory's ownership into an empty volume).
ENV MAILROOM__STORAGE__DIR=/data/uploads \
    MAILROOM__MAILBOX__MAILDIR=/data/mailbox \
    MAILROOM__OUTBOX__MAILDIR=/data/outbox \
    MAILROOM__TELEMETRY__FORMAT=json

WORKDIR /data
USER 10001:10001

# 9090: a worker's /metrics, /healthz and /readyz when http.listen is 0.0.0.0:9090 (the
# default is 127.0.0.1:0, which is unreachable from outside the container; the compose file and
# the Kubernetes ConfigMap set it). 8080: the upload API.
EXPOSE 9090 8080

ENTRYPOINT ["/usr/bin/tini", "--"]
# No default worker: say which process to run. `mailroom --help` lists the operator commands.
CMD ["mailroom", "--help"]
