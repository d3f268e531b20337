# syntax=docker/dockerfile:1
# One image with the four AbTrack Notify services; docker-compose.yml picks the binary
# per service. Build: docker build -t abtrack-notify .

# ---- builder: the Rust toolchain; nothing of it reaches the runtime image ----
FROM rust:1.94-slim-bookworm AS builder
WORKDIR /src
# The whole workspace is needed (cargo reads every member's manifest); .dockerignore
# keeps build output, local data and keys out of the context.
COPY . .
# The caches keep the crate downloads and the compiled dependencies between builds;
# the binaries are copied out of the cached target folder.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p abtrack-dispatcher -p abtrack-wa-gateway -p abtrack-sheets-logger -p abtrack-status-web \
    && mkdir -p /out \
    && cp target/release/dispatcher target/release/wa-gateway \
          target/release/sheets-logger target/release/status-web /out/

# ---- runtime: Debian slim, the four binaries, CA roots, a non-root user ----
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 abtrack \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin abtrack \
    && mkdir -p /config /data/dispatcher /data/wa-gateway /data/sheets-logger \
    && chown -R abtrack:abtrack /data
COPY --from=builder /out/dispatcher /out/wa-gateway /out/sheets-logger /out/status-web /usr/local/bin/

# /config: the working folder, mounted read-only (credentials.json,
# sheets-credentials.json and config.json are read from there under their usual names).
# /data/<service>: each service's state, a named volume in docker-compose.yml (a new
# named volume copies the ownership of these folders, so the user below can write).
WORKDIR /config
ENV DISPATCHER_DATA_DIR=/data/dispatcher \
    WA_DATA_DIR=/data/wa-gateway \
    SHEETS_DATA_DIR=/data/sheets-logger
# The user abtrack, by number so orchestrators can verify it is not root.
USER 10001:10001
# Every binary answers `<binary> healthcheck` (grpc.health.v1, or GET /healthz for
# status-web); docker-compose.yml uses it. Run one service per container:
#   docker run --rm abtrack-notify dispatcher --help
CMD ["status-web", "--help"]
