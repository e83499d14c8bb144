# syntax=docker/dockerfile:1
# One image with the OMS binaries; compose.yaml picks one per container with `command:`.
#
#   docker build -t oms:dev .
#   docker run --rm -e OMS_NATS__URL=nats://<nats host>:4222 -e OMS_NATS__CREDS_DIR=/creds \
#       -v <folder with edge.nk and edge-jwt.secret, readable by uid 10001>:/creds:ro \
#       -p 8090:8090 oms:dev oms-edge
#
# scripts/check-compose.sh (CI) checks that compose.yaml runs only workspace binaries that this
# file builds (OMS_BINARIES and the cargo build -p list).

# The base images are pinned to exact tags: the build image to the Rust release of
# rust-toolchain.toml (checked below), the run image to a dated Debian 12 snapshot (Debian's
# monthly rebuild with the security updates of that day; take a newer date to get newer ones). Both
# are Debian 12, so the binaries find the glibc they were linked against. The tags are Docker
# Hub's official ones (library/rust, library/debian); they were chosen on a machine without a
# Docker engine or access to the registry, so no digest could be read: to pin the content too,
# append `@sha256:<digest>` as `docker buildx imagetools inspect <image>` prints it.

# ---- build ----
FROM rust:1.95.0-bookworm AS build
# The five services; the dead-letter tool and the broker's set-up (oms-dlq, oms-provision, in the
# oms-ops package); the edge's development tokens (oms-token, in oms-edge).
ARG OMS_BINARIES="oms-edge oms-customer oms-inventory oms-payment oms-order oms-dlq oms-provision oms-token"
# SQL is checked at run time; never look for a database while compiling.
ENV SQLX_OFFLINE=true
# The image's own toolchain (its RUST_VERSION, installed with rustup's minimal profile), named
# so that rustup ignores rust-toolchain.toml: that file also asks for rustfmt and clippy, which
# rustup would download, and which a release build does not need.
ENV RUSTUP_TOOLCHAIN=${RUST_VERSION}
WORKDIR /src
COPY . .
# The image's Rust must be the release of rust-toolchain.toml: bump both together.
RUN pinned="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)" \
 && if [ "$pinned" != "$RUST_VERSION" ]; then \
        echo "rust-toolchain.toml pins Rust $pinned, but the build image has $RUST_VERSION" >&2; exit 1; \
    fi
# The cache mounts keep downloaded crates and compiled dependencies between builds; the binaries
# are copied out of the target cache in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bins \
        -p oms-edge -p oms-customer -p oms-inventory -p oms-payment -p oms-order -p oms-ops \
 && mkdir -p /out \
 && for bin in $OMS_BINARIES; do \
        install -m 0755 "target/release/$bin" /out/ || exit 1; \
    done

# ---- run ----
FROM debian:bookworm-20260803-slim
# No packages installed: the health check is a bash script (bash is in the base image), and the
# CA bundle for TLS to NATS or PostgreSQL comes from the build stage.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# The mount points of compose.yaml's volumes, owned by oms: a named volume takes the owner and
# mode of the image's folder when it is first mounted, so oms can write into it.
# - /data: the docker profile's data_dir (SQLite files of a service that has no database_url;
#   compose.yaml gives customer, inventory and order a PostgreSQL database instead).
# - /creds: a service's own secrets (OMS_NATS__CREDS_DIR): its nkey seed, the edge's JWT secret,
#   a SQL service's pgpass file.
# - /oms/secrets, /oms/out/<recipient>, /nats-auth: the `secrets` one-shot's volumes (all
#   secrets; the copy for each recipient; the NATS nodes' generated config, public keys only).
#   Prometheus's and Grafana's copies are read by those images' users through the group oms.
RUN groupadd --system --gid 10001 oms \
 && useradd --system --uid 10001 --gid oms --home-dir /app --no-create-home --shell /usr/sbin/nologin oms \
 && mkdir -p /app \
 && install -d -o oms -g oms -m 0755 /data /nats-auth \
 && install -d -o oms -g oms -m 0700 /creds /oms/secrets \
        /oms/out/provisioner /oms/out/edge /oms/out/customer /oms/out/inventory /oms/out/payment \
        /oms/out/order /oms/out/operator /oms/out/postgres \
 && install -d -o oms -g oms -m 0750 /oms/out/prometheus /oms/out/grafana
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
# A service needs its broker identity's seed in OMS_NATS__CREDS_DIR (oms-provision creds makes them).
CMD ["oms-edge"]
