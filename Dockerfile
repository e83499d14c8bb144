# syntax=docker/dockerfile:1
# One image with the OMS binaries; compose.yaml picks one per container with `command:`.
#
#   docker build -t oms:dev .
#   docker run --rm -e OMS_NATS__URL=nats://<nats host>:4222 -p 8090:8090 oms:dev oms-edge
#
# scripts/check-compose.sh (CI) checks that every binary listed in OMS_BINARIES is one of the
# workspace's, that compose.yaml runs only those, and that every COPY source exists.

# ---- build ----
FROM rust:1-bookworm AS build
# The five services and the dead-letter tool (oms-dlq, in the oms-shared package).
ARG OMS_BINARIES="oms-edge oms-customer oms-inventory oms-payment oms-order oms-dlq"
# SQL is checked at run time; never look for a database while compiling.
ENV SQLX_OFFLINE=true
WORKDIR /src
COPY . .
# The cache mounts keep downloaded crates and compiled dependencies between builds; the binaries
# are copied out of the target cache in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bins \
        -p oms-edge -p oms-customer -p oms-inventory -p oms-payment -p oms-order -p oms-shared \
 && mkdir -p /out \
 && for bin in $OMS_BINARIES; do \
        install -m 0755 "target/release/$bin" /out/ || exit 1; \
    done

# ---- run ----
FROM debian:bookworm-slim
# No packages installed: the health check is a bash script (bash is in the base image), and the
# CA bundle for TLS to NATS or PostgreSQL comes from the build stage.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN groupadd --system --gid 10001 oms \
 && useradd --system --uid 10001 --gid oms --home-dir /app --no-create-home --shell /usr/sbin/nologin oms \
 && mkdir -p /app /data \
 && chown oms:oms /data
# /data is the docker profile's data_dir: SQLite files of a service that has no database_url
# (compose.yaml gives customer, inventory and order a PostgreSQL database instead).
COPY --from=build /out/ /usr/local/bin/
COPY --chmod=0755 compose/oms-healthcheck.sh /usr/local/bin/oms-healthcheck
COPY oms.toml /app/oms.toml
WORKDIR /app
USER oms:oms
ENV OMS_PROFILE=docker \
    OMS_CONFIG=/app/oms.toml
# edge 8090 (API); customer 8091, inventory 8092, payment 8093, order 8094 (health).
EXPOSE 8090 8091 8092 8093 8094
# Health: oms-healthcheck http://127.0.0.1:<port>/readyz (compose.yaml sets it per service).
CMD ["oms-edge"]
