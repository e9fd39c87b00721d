# fmrecall: multi-stage build. Dependencies are compiled in their own layer (from the manifests
# only), so editing the source rebuilds just the crate; the runtime image holds the binary alone
# (configuration and migrations are embedded in it) and runs as a non-root user.

FROM rust:1.95-slim-bookworm AS builder
WORKDIR /build
# 1. Dependencies, cached until Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src && echo "fn main() {}" > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src target/release/.fingerprint/fmrecall-*
# 2. The crate itself: the same command CI runs (.ci/run).
COPY config config
COPY migrations migrations
COPY src src
RUN cargo build --release --locked

FROM debian:bookworm-slim AS runtime
# /models is where the compose file's train job writes artifacts; a new named volume copies this
# ownership, so the non-root user can write there.
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/fmrecall fmrecall \
    && mkdir -p /models && chown fmrecall /models
COPY --from=builder /build/target/release/fmrecall /usr/local/bin/fmrecall
WORKDIR /var/lib/fmrecall
# Listen on every interface inside the container only; state lives in /var/lib/fmrecall (a volume).
ENV FMRECALL_SERVER__BIND=0.0.0.0:8080 \
    FMRECALL_DATABASE__URL=sqlite:///var/lib/fmrecall/data/fmrecall.db \
    FMRECALL_SERVER__DEMO_MODEL_DIR=/var/lib/fmrecall/models/demo \
    FMRECALL_TRAIN__OUT=/var/lib/fmrecall/models/{version}
USER 10001
VOLUME ["/var/lib/fmrecall"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["fmrecall", "healthcheck"]
ENTRYPOINT ["fmrecall"]
CMD ["serve"]
