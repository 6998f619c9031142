# One image holds every service binary; docker-compose.yml picks one per container.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
        -p command-api -p validator -p query-api -p notifier -p content-processor \
    && mkdir /out \
    && cp target/release/command-api target/release/validator \
          target/release/query-api target/release/notifier target/release/content-processor /out/

# The browser UI, built as scripts/build-ui builds it anywhere (here with rustup's wasm target).
FROM rust:1-bookworm AS ui
WORKDIR /src
COPY . .
RUN rustup target add wasm32-unknown-unknown && ./scripts/build-ui

FROM debian:bookworm-slim
# libssl3: librdkafka speaks TLS to managed Kafka clusters (KAFKA_SECURITY_PROTOCOL=ssl|sasl_ssl).
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 app
COPY --from=build /out/ /usr/local/bin/
COPY --from=ui /src/ui/dist/ /usr/local/share/content-processor/ui/
USER app
ENV LOG_FORMAT=json UI_DIR=/usr/local/share/content-processor/ui
