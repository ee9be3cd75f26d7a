#!/usr/bin/env bash
# Fetches the Debian packages whose files go into images (the -debug variants' static busybox,
# `busybox-static`), for any architecture, from Debian's archive with a private apt state (never
# through multiarch). `cargo xtask image` runs it for what it lacks.
#
# usage: fetch-debian-packages.sh DIR DEBIAN_ARCH:PACKAGE...
#   unpacks each package into DIR/DEBIAN_ARCH/PACKAGE/ (its control files in DEBIAN/) and records its exact version in
#   DIR/DEBIAN_ARCH/PACKAGE.version (both appear atomically: a directory is renamed into place).
# Idempotent: packages already unpacked are not fetched again.
set -euo pipefail
# Progress goes to stderr: xtask commands run this and keep their stdout for `--json`.
exec 1>&2

DIR=${1:?usage: fetch-debian-packages.sh DIR DEBIAN_ARCH:PACKAGE...}
shift
[ $# -gt 0 ] || { echo "fetch-debian-packages: name at least one DEBIAN_ARCH:PACKAGE" >&2; exit 2; }

want=()
arches=()
for spec in "$@"; do
  arch=${spec%%:*} pkg=${spec#*:}
  if ! [[ $arch =~ ^[a-z0-9]+$ && $pkg =~ ^[a-z0-9][a-z0-9+.-]*$ ]]; then
    echo "fetch-debian-packages: invalid DEBIAN_ARCH:PACKAGE $spec" >&2
    exit 2
  fi
  [ -d "$DIR/$arch/$pkg" ] && [ -f "$DIR/$arch/$pkg.version" ] && continue
  want+=("$pkg:$arch")
  [[ " ${arches[*]} " == *" $arch "* ]] || arches+=("$arch")
done
[ ${#want[@]} -gt 0 ] || exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "fetch-debian-packages: run as root on Debian 12 to fetch ${want[*]}, or unpack them by hand into $DIR" >&2
  exit 1
fi
# shellcheck source=lib/private-apt.sh
. "$(dirname "$0")/lib/private-apt.sh"
debs=$(mktemp -d)
trap 'rm -rf "$debs"' EXIT
echo "fetch-debian-packages: downloading ${want[*]}"
arch_list=$(IFS=,; echo "${arches[*]}")
private_apt_download "$debs" "$arch_list" "${want[@]}"
for w in "${want[@]}"; do
  pkg=${w%%:*} arch=${w#*:}
  deb=$(ls "$debs/${pkg}_"*"_$arch.deb" 2>/dev/null | head -1 || true)
  [ -n "$deb" ] || deb=$(ls "$debs/${pkg}_"*"_all.deb" | head -1)
  mkdir -p "$DIR/$arch"
  tmp="$DIR/$arch/.$pkg.partial"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  dpkg-deb -x "$deb" "$tmp"
  # The control files (control, md5sums) go in DEBIAN/: images carry them as the package's dpkg
  # status (/var/lib/dpkg/status.d/, as distroless does), so scanners know whose files these are.
  dpkg-deb -e "$deb" "$tmp/DEBIAN"
  dpkg-deb -f "$deb" Version >"$tmp.version"
  rm -rf "${DIR:?}/$arch/$pkg"
  mv "$tmp" "$DIR/$arch/$pkg"
  mv "$tmp.version" "$DIR/$arch/$pkg.version"
  echo "fetch-debian-packages: $arch $pkg $(cat "$DIR/$arch/$pkg.version")"
done
