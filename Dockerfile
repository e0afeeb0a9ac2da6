# One image for every service and nestctl (docker-compose.yml runs one container per service).
# Build: docker build -t nest-distribution .
FROM swift:6.3-bookworm AS build
RUN apt-get update \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libsqlite3-dev \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# One product per swift build: it builds only the last --product it is given.
ARG PRODUCTS="catalog-service entitlement-service marketplace-order-service settlement-service events-service nestctl"
RUN mkdir /out \
  && for product in $PRODUCTS; do \
    swift build -c release --static-swift-stdlib --product "$product" \
      && cp ".build/release/$product" /out/ || exit 1; \
  done

FROM debian:bookworm-slim
# Runtime libraries only; protoc lets `nestctl call` and `nestctl <service> <method>` encode requests.
RUN apt-get update \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    libprotobuf-c1 libsqlite3-0 protobuf-compiler ca-certificates \
  && rm -rf /var/lib/apt/lists/* \
  && useradd --system --uid 10001 --home-dir /data nest \
  && mkdir -p /data && chown nest /data
COPY --from=build /out/ /usr/local/bin/
COPY proto /usr/share/nest/proto
ENV NEST_HOST=0.0.0.0 NEST_PROTO_PATH=/usr/share/nest/proto
USER nest
VOLUME /data
EXPOSE 7101 7102 7103 7104 7105
CMD ["nestctl", "--help"]
