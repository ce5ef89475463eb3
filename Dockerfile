# Vigil: multi-stage build. The build stage compiles with the official Swift image; the run stage is a slim
# Debian with librdkafka and tzdata only. Rules are mounted read-only at /etc/vigil/rules (the image carries
# a copy of the starter pack as a default); the audit log lives in /var/lib/vigil, its sealing key in
# /var/lib/vigil-key and a copy of its sealed heads in /var/lib/vigil-anchors (three volumes, so that they can be
# kept apart: the key never in a backup, the anchors on storage the log's writers cannot rewrite).
ARG SWIFT_IMAGE=swift:6.2-bookworm

FROM ${SWIFT_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends librdkafka-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources Sources
RUN swift build -c release --product vigil --static-swift-stdlib \
 && install -D .build/release/vigil /out/vigil

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends librdkafka1 tzdata ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/vigil vigil \
 && install -d -o vigil -g vigil -m 0700 /var/lib/vigil /var/lib/vigil-key /var/lib/vigil-anchors
COPY --from=build /out/vigil /usr/local/bin/vigil
COPY Rules /etc/vigil/rules
COPY deploy/vigil.yaml /etc/vigil/vigil.yaml
ENV VIGIL_RULES=/etc/vigil/rules
USER vigil
WORKDIR /var/lib/vigil
VOLUME ["/var/lib/vigil", "/var/lib/vigil-key", "/var/lib/vigil-anchors"]
# /metrics, /healthz, /readyz when run with http: (deploy/vigil.yaml).
EXPOSE 9464
ENTRYPOINT ["vigil"]
CMD ["run", "--config", "/etc/vigil/vigil.yaml"]
