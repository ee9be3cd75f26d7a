#!/usr/bin/env bash
# Installs what `cargo xtask build` needs to cross-compile the node binaries for
# linux/arm64, linux/ppc64le, linux/s390x and linux/arm/v7 on a Debian 12 amd64 host, offline from
# Debian's archive only:
#   - Debian's rustc-web pinned to 1.85 (the only version whose std Debian ships for all
#     five architectures; it is also our MSRV), held so an upgrade cannot break the match,
#   - the foreign std rlibs (libstd-rust-web-dev:<arch>) downloaded with a private apt state
#     and unpacked into a private sysroot under target/ (never `dpkg --add-architecture`:
#     with foreign architectures enabled `apt-get update` can exit 100 on this mirror),
#   - Debian's cross gcc as linker (and its binutils, for objcopy), and qemu-user-static to
#     run what was built.
# Idempotent: a machine that has everything pays a few dpkg queries.
# usage: install-cross-toolchains.sh SYSROOT_DIR
set -euo pipefail
# Progress goes to stderr: xtask commands run this and keep their stdout for `--json`.
exec 1>&2

RUST_DEB_VER=1.85.0+dfsg3-1~deb12u3
STD_PKG=libstd-rust-web-1.85
SYSROOT=${1:?usage: install-cross-toolchains.sh SYSROOT_DIR}
FOREIGN=(arm64 ppc64el s390x armhf)
HOST_PKGS=(rustc-web="$RUST_DEB_VER" libstd-rust-web-dev="$RUST_DEB_VER" "$STD_PKG"="$RUST_DEB_VER"
  gcc-aarch64-linux-gnu gcc-powerpc64le-linux-gnu gcc-s390x-linux-gnu gcc-arm-linux-gnueabihf
  libc6-dev-arm64-cross libc6-dev-ppc64el-cross libc6-dev-s390x-cross libc6-dev-armhf-cross
  binutils-x86-64-linux-gnu qemu-user-static file)

need_root() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "install-cross-toolchains: missing: $*" >&2
    echo "install-cross-toolchains: run as root on Debian 12, or install these Debian packages by hand:" >&2
    echo "  ${HOST_PKGS[*]}" >&2
    echo "  and unpack libstd-rust-web-dev:{arm64,ppc64el,s390x,armhf}=$RUST_DEB_VER into $SYSROOT" >&2
    exit 1
  fi
}

APT=(apt-get -o DPkg::Lock::Timeout=900 -qq)
export DEBIAN_FRONTEND=noninteractive

# 1. Host packages.
missing=()
dpkg-query -W -f='${Version}' rustc-web 2>/dev/null | grep -qx "$RUST_DEB_VER" || missing+=(rustc-web)
for p in gcc-aarch64-linux-gnu gcc-powerpc64le-linux-gnu gcc-s390x-linux-gnu gcc-arm-linux-gnueabihf \
  libc6-dev-arm64-cross libc6-dev-ppc64el-cross libc6-dev-s390x-cross libc6-dev-armhf-cross \
  binutils-x86-64-linux-gnu qemu-user-static file; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  need_root "${missing[*]}"
  echo "install-cross-toolchains: installing ${missing[*]}"
  "${APT[@]}" update || echo "install-cross-toolchains: apt-get update reported errors; only bookworm main is needed"
  "${APT[@]}" install -y --no-install-recommends --allow-downgrades "${HOST_PKGS[@]}"
  apt-mark hold rustc-web libstd-rust-web-dev "$STD_PKG" >/dev/null
fi

# 2. Foreign std rlibs into the private sysroot.
have_all=1
for t in aarch64-unknown-linux-gnu powerpc64le-unknown-linux-gnu s390x-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
  [ -d "$SYSROOT/usr/lib/rustlib/$t/lib" ] || have_all=0
done
if [ $have_all = 0 ]; then
  need_root "foreign std in $SYSROOT"
  echo "install-cross-toolchains: unpacking libstd-rust-web-dev for ${FOREIGN[*]} into $SYSROOT"
  A=$(mktemp -d)
  trap 'rm -rf "$A"' EXIT
  # shellcheck source=lib/private-apt.sh
  . "$(dirname "$0")/lib/private-apt.sh"
  private_apt_download "$A" arm64,ppc64el,s390x,armhf \
    libstd-rust-web-dev:arm64="$RUST_DEB_VER" libstd-rust-web-dev:ppc64el="$RUST_DEB_VER" \
    libstd-rust-web-dev:s390x="$RUST_DEB_VER" libstd-rust-web-dev:armhf="$RUST_DEB_VER"
  tmp="$SYSROOT.partial"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  for d in "$A"/*.deb; do dpkg-deb -x "$d" "$tmp"; done
  rm -rf "$SYSROOT"
  mv "$tmp" "$SYSROOT"
fi
echo "install-cross-toolchains: ready (rustc $(/usr/bin/rustc --version 2>/dev/null | cut -d' ' -f2), sysroot $SYSROOT)"
