# syntax=docker/dockerfile:1
# The vsphere-csi image: one static binary for the controller and the node plugin.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t vsphere-csi:dev .
#
# The controller runs it as the unprivileged user below; the node plugin (privileged, root, set
# by the chart) formats, mounts and resizes with the tools of the runtime stage.

ARG GO_VERSION=1.26.8
ARG DEBIAN_RELEASE=bookworm

FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
# The same command as `make build` (the chart tests check that they agree).
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/vsphere-csi ./cmd/vsphere-csi

FROM debian:${DEBIAN_RELEASE}-slim
# mount, umount (mount); blkid, fsck, mkfs, blockdev, findmnt, lsblk (util-linux);
# mkfs.ext4, resize2fs, e2fsck (e2fsprogs); mkfs.xfs, xfs_growfs, xfs_repair (xfsprogs);
# udevadm (udev); mount.nfs4, mount.nfs (nfs-common), for ReadWriteMany volumes (vSAN file shares);
# the public CAs, for a vCenter certificate signed by one (ca-certificates).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates \
        e2fsprogs \
        mount \
        nfs-common \
        udev \
        util-linux \
        xfsprogs \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/vsphere-csi /usr/local/bin/vsphere-csi
ARG VERSION=dev
LABEL org.opencontainers.image.title="vsphere-csi" \
      org.opencontainers.image.description="CSI driver for vSphere Cloud Native Storage" \
      org.opencontainers.image.source="https://github.com/vsphere-cns/vsphere-csi" \
      org.opencontainers.image.version="${VERSION}"
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/vsphere-csi"]
