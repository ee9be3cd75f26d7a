# Sourced by the scripts that fetch Debian packages of foreign architectures (the cross std, the
# images' busybox). Downloads .debs with a private apt state — its own lists, cache and sources — so
# the machine's dpkg never learns foreign architectures (`dpkg --add-architecture` makes
# `apt-get update` exit 100 on this mirror; see ../shared/env/cross-compile.md).

# The machine's Debian mirror (deb822 sources first, then sources.list), else deb.debian.org.
debian_mirror() {
  local m
  m=$(grep -hoE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
  [ -n "$m" ] || m=$(awk '$1=="deb" && $0 !~ /security/ {for(i=2;i<=NF;i++) if ($i ~ /^http/) {print $i; exit}}' /etc/apt/sources.list 2>/dev/null || true)
  echo "${m:-http://deb.debian.org/debian}"
}

# private_apt_download DEST ARCHES PACKAGE[:ARCH][=VERSION]...
#   ARCHES: comma-separated Debian architectures (e.g. arm64,armhf) of bookworm main to index.
#   Downloads the named packages' .debs into DEST (which must exist).
private_apt_download() {
  local dest=$1 arches=$2
  shift 2
  local a
  a=$(mktemp -d)
  mkdir -p "$a/lists/partial" "$a/cache/archives/partial"
  chown -R _apt:root "$a" 2>/dev/null || true
  chown _apt:root "$dest" 2>/dev/null || true
  echo "deb [arch=$arches signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(debian_mirror) bookworm main" >"$a/sources.list"
  local opts=(-o Dir::State::Lists="$a/lists" -o Dir::Cache="$a/cache" -o Dir::Etc::sourcelist="$a/sources.list"
    -o Dir::Etc::sourceparts=/nonexistent -o APT::Architectures::=amd64)
  local arch
  for arch in ${arches//,/ }; do opts+=(-o APT::Architectures::="$arch"); done
  local rc=0
  apt-get -qq "${opts[@]}" update && (cd "$dest" && apt-get -qq "${opts[@]}" download "$@") || rc=$?
  rm -rf "$a"
  return $rc
}
