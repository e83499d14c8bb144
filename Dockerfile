# syntax=docker/dockerfile:1
# One image with the five OMS binaries; compose.yaml picks one per container with `command:`.
#
#   docker build -t oms:dev .
#   docker run --rm -e OMS_NATS__URL=nats://<nats host>:4222 -p 8090:8090 oms:dev oms-edge

# ---- build ----
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep downloaded crates and compiled dependencies between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
        -p oms-edge -p oms-customer -p oms-inventory -p oms-payment -p oms-order \
 && mkdir -p /out \
 && for bin in oms-edge oms-customer oms-inventory oms-payment oms-order; do \
        cp "target/release/$bin" /out/; \
    done

# ---- run ----
FROM debian:bookworm-slim
# curl: the containers' health checks (GET /readyz); ca-certificates: TLS to NATS if configured.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 oms \
 && useradd --system --uid 10001 --gid oms --home-dir /app --no-create-home --shell /usr/sbin/nologin oms \
 && mkdir -p /app /data \
 && chown oms:oms /data
# /data is the docker profile's data_dir (SQLite files of customer, inventory and order);
# compose.yaml mounts a named volume there per service.
COPY --from=build /out/ /usr/local/bin/
COPY oms.toml /app/oms.toml
WORKDIR /app
USER oms
ENV OMS_PROFILE=docker \
    OMS_CONFIG=/app/oms.toml
# edge 8090 (API); customer 8091, inventory 8092, payment 8093, order 8094 (health).
EXPOSE 8090 8091 8092 8093 8094
CMD ["oms-edge"]
