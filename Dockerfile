# syntax=docker/dockerfile:1
# image-scanner operator image: one static binary on distroless (no shell, no libc), uid 65532.
#
# Base images are pinned by digest (tags move; a digest is what was tested). Refresh a pin with
#   docker buildx imagetools inspect <image>:<tag>      (the "Digest:" of the index)
# The digests below were found in public sources while building offline and not pulled here;
# see docs/install.md, "Images". The build stage runs tests/install/build-static.sh, the same
# script `make image-binary` runs on a host, so both produce the same binary.
ARG RUST_IMAGE=rust:1.95@sha256:f49565f188ee00bc2a18dd418183f2c5f23ef7d6e691890517ed341a598f67c3
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian13:nonroot@sha256:1c2c046bc09ed40fad370b599a0b1ae7987f55b01e247cf27a7c27cd97e5bbc7

FROM ${RUST_IMAGE} AS builder
# BuildKit's SBOM (docker buildx build --sbom=true, the release workflow) scans only the final
# stage unless told otherwise; this stage holds the Rust crates the binary is made of.
ARG BUILDKIT_SBOM_SCAN_STAGE=true
# musl target and its C compiler (ring compiles C): a fully static binary without glibc's NSS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "$(uname -m)-unknown-linux-musl"
WORKDIR /src
COPY . .
RUN OUT_DIR=/out CARGO_TARGET_DIR=/src/target tests/install/build-static.sh

FROM ${RUNTIME_IMAGE}
COPY --from=builder /out/image-scanner-operator /image-scanner-operator
USER 65532:65532
ENTRYPOINT ["/image-scanner-operator"]
