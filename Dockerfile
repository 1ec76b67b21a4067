# Multi-stage build: a static binary from the Go stage, run from distroless
# static as a non-root user. Works with a read-only root filesystem: the only
# writes are to the store, under /data.
#
#   docker build -t gateway .
#   docker run --read-only -v $PWD/config:/config:ro -v gateway-data:/data -p 8080:8080 gateway
#
# The configuration must listen on 0.0.0.0 (server.listen = "0.0.0.0:8080")
# and keep its store under /data (store.path = "/data/gateway.db").
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/gateway ./cmd/gateway

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gateway /gateway
USER nonroot:nonroot
VOLUME ["/config", "/data"]
EXPOSE 8080 9090
ENTRYPOINT ["/gateway"]
CMD ["serve", "--config", "/config/gateway.toml"]
