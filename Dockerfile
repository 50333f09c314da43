# The worker and starter binaries in one image, for docker-compose.yml.
FROM golang:1.26 AS build
WORKDIR /src
ENV GONOSUMDB=github.com/bacalhau-project CGO_ENABLED=0
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -o /out/worker ./worker && go build -o /out/starter ./starter

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/worker /out/starter /usr/local/bin/
COPY examples /examples
ENTRYPOINT ["/usr/local/bin/worker"]
