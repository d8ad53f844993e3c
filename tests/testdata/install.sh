#!/bin/bash
# The install test (tests/install_test.go runs it in a mount namespace of
# its own, as root): an overlayfs over / with its upper layer on a tmpfs, so
# dpkg writes into the overlay and never into this machine's /usr or dpkg
# database; then install-inside.sh runs chrooted into the overlay.
set -euo pipefail
deb=$1 top=$2
mount --make-rprivate /
mount -t tmpfs tmpfs "$top"
mkdir -p "$top"/{upper,work,root}
mount -t overlay overlay -o "lowerdir=/,upperdir=$top/upper,workdir=$top/work" "$top/root"
for d in proc sys dev; do mount --rbind "/$d" "$top/root/$d"; done
mount -t tmpfs tmpfs "$top/root/run"   # no host sockets or pid files inside
mkdir -p "$top/root/run/lock"
cp "$deb" "$top/root/tmp/ocf-csync.deb"
cp "$(dirname "$0")/install-inside.sh" "$top/root/tmp/install-inside.sh"
exec chroot "$top/root" /bin/bash /tmp/install-inside.sh
