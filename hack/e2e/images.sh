# shellcheck shell=bash
# images: without a Docker engine, as OCI archives in $E2E_CACHE/images: the driver's from the
# Dockerfile (mmdebstrap root filesystem, cached), another version of it for helm upgrade, the
# sidecars', pause, busybox. Each archive is kept in $E2E_CACHE/image-cache under a hash of all it
# is built from (the tool, the files, the arguments): a warm run copies it.

images() {
	step "Images without a Docker engine, as OCI archives: the driver's from the Dockerfile (mmdebstrap root filesystem, cached), the sidecars', pause, busybox"
	local img=$E2E_CACHE/images
	rm -rf "$img" && mkdir -p "$img"
	(cd "$ROOT/test/e2e" && CGO_ENABLED=0 $GO build -trimpath -o "$img/" ./cmd/pause ./cmd/mkimage ./cmd/driverimage)
	driver_images
	sidecar_images
	cached_image pause "$(inputs_key "$img/mkimage" "$img/pause" --)" \
		"$img/mkimage" -name registry.k8s.io/pause:3.10 -o "$img/pause.tar" -entrypoint /pause "$img/pause=/pause"
	local links="" a
	for a in sh ls cat echo sleep test [ stat mkdir rm dd sync hostname wc od head tail grep mount df true false env touch blockdev tee; do
		links="$links bin/$a->busybox"
	done
	# shellcheck disable=SC2086 # $links: one argument per link
	cached_image busybox "$(inputs_key "$img/mkimage" /bin/busybox -- $links)" \
		"$img/mkimage" -name docker.io/library/busybox:e2e -o "$img/busybox.tar" -entrypoint /bin/sh \
		/bin/busybox=/bin/busybox $links
	[ -z "${E2E_CONFORMANCE:-}" ] || conformance_images
	rm -f "$img/pause" "$img/mkimage" "$img/driverimage"
	took
}

# driver_images (img is the caller's): the driver's image and the next version's. Where the
# kernel has no NFS client (as here), nfs-common's mount.nfs4 can't mount the node plugin's file
# shares: one more layer puts the test NFS client (test/nfsmount) in its place;
# TestDriverImageFollowsDockerfile holds that layer to exactly that. The root filesystem is in
# the key through the Dockerfile and driverimage; when its cache is gone (to take Debian's
# updates), the images made from it go too.
driver_images() {
	local nfs=() ver
	if ! "$ROOT/bin/mount.nfs" --kernel-has-nfs; then
		nfs=(-add "$ROOT/bin/mount.nfs=/usr/sbin/mount.nfs4" -add "$ROOT/bin/mount.nfs=/usr/sbin/mount.nfs")
		echo "    no NFS client in this kernel: the driver's images get the test NFS client as mount.nfs4 in a layer of its own"
	fi
	ls "$E2E_CACHE"/rootfs/rootfs-*.tar >/dev/null 2>&1 || rm -rf "$E2E_CACHE/image-cache"
	ver=$("$ROOT/bin/vsphere-csi" --version | awk '{print $2}')
	cached_image vsphere-csi "$(inputs_key "$img/driverimage" "$ROOT/Dockerfile" "$ROOT/bin/vsphere-csi" "$ROOT/bin/mount.nfs" -- "$ver" "${nfs[@]}")" \
		"$img/driverimage" -dockerfile "$ROOT/Dockerfile" -binary "$ROOT/bin/vsphere-csi" \
		-version "$ver" -cache "$E2E_CACHE/rootfs" -name "$DRIVER_IMAGE" -o "$img/vsphere-csi.tar" "${nfs[@]}"
	# A newly built driver for the chart phase's helm upgrade: the same source, another version.
	cached_image vsphere-csi-next "$(inputs_key "$img/driverimage" "$ROOT/Dockerfile" "$ROOT/bin/vsphere-csi" "$ROOT/bin/mount.nfs" -- "$ver-next" "${nfs[@]}")" \
		build_next_image "$E2E_CACHE/next" "$ver-next" "${nfs[@]}"
}

# sidecar_images (img is the caller's): the sidecars as their upstream images are: the static
# binary alone, run as root.
sidecar_images() {
	local mod s sver
	for s in external-provisioner/v6:csi-provisioner external-attacher/v4:csi-attacher external-resizer/v2:csi-resizer \
		external-snapshotter/v8:csi-snapshotter external-snapshotter/v8:snapshot-controller; do
		mod=github.com/kubernetes-csi/${s%%:*}
		sver=$(cd "$ROOT/test/e2e/tools/sidecars" && $GO list -m -f '{{.Version}}' "$mod")
		cached_image "${s##*:}" "$(inputs_key "$img/mkimage" "$E2E_CACHE/bin/${s##*:}" -- "$sver")" \
			"$img/mkimage" -name "registry.k8s.io/sig-storage/${s##*:}:$sver" -o "$img/${s##*:}.tar" \
			-entrypoint "/${s##*:}" "$E2E_CACHE/bin/${s##*:}=/${s##*:}"
	done
}

# inputs_key FILE... -- WORD...: a hash of the files' contents and the words.
inputs_key() {
	local files=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do files+=("$1"); shift; done
	shift
	{ sha256sum "${files[@]}" | cut -c1-64; printf '%s\n' "$@"; } | sha256sum | cut -c1-16
}

# cached_image NAME KEY CMD...: $img/NAME.tar (img is the caller's) from $E2E_CACHE/image-cache
# when one was built from the same inputs (KEY), else built by CMD and kept there (replacing
# NAME's older ones).
cached_image() {
	local name=$1 key=$2; shift 2
	local dir=$E2E_CACHE/image-cache
	if [ -f "$dir/$name-$key.tar" ]; then
		cp "$dir/$name-$key.tar" "$img/$name.tar"
		echo "    $name.tar: cached ($key)"
		return 0
	fi
	"$@"
	mkdir -p "$dir"
	rm -f "$dir/$name"-????????????????.tar
	# Whole or not at all: a copy cut short must not pass for the image.
	cp "$img/$name.tar" "$dir/.$name-$key.tar.tmp"
	mv "$dir/.$name-$key.tar.tmp" "$dir/$name-$key.tar"
	echo "    $name.tar: built ($key)"
}

# build_next_image DIR VERSION DRIVERIMAGE-ARGS...: the driver built again
# with another version into DIR, and its image as vsphere-csi-next.tar.
build_next_image() {
	local dir=$1 ver=$2; shift 2
	make -C "$ROOT" --no-print-directory build GO="$GO" BIN="$dir" VERSION="$ver" >/dev/null
	"$img/driverimage" -dockerfile "$ROOT/Dockerfile" -binary "$dir/vsphere-csi" -version "$ver" -cache "$E2E_CACHE/rootfs" \
		-name "$DRIVER_IMAGE-next" -o "$img/vsphere-csi-next.tar" "$@"
}
