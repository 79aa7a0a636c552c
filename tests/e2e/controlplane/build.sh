#!/usr/bin/env bash
# Builds the pinned test-bed binaries (etcd, kube-apiserver, kube-controller-manager, helm, promtool, toxiproxy)
# from the Go module proxy into a cache outside the work tree. A binary is rebuilt only when the cached one does not
# report the pinned version, so warm runs cost a few process starts.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
KUBE_VERSION=v1.33.5
ETCD_VERSION=3.5.21
HELM_VERSION=v3.21.3
# Prometheus 3.16.0: its Go module is versioned v0.<minor+300>.<patch>.
PROMETHEUS_VERSION=3.16.0
PROMETHEUS_MODULE=v0.316.0
TOXIPROXY_VERSION=2.5.0
cache=${DBAASCTL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbaasctl}
bin=${DBAASCTL_TESTBED_BIN:-$cache/bin/kube-$KUBE_VERSION}

if [ "${1:-}" = "--print-bin" ]; then echo "$bin"; exit 0; fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
mkdir -p "$bin"

# Capture first, then match: `cmd | grep -q` can kill cmd with SIGPIPE, which pipefail turns into a failure.
reports() {
  local bin=$1 arg=$2 want=$3 out
  [ -x "$bin" ] || return 1
  out=$("$bin" "$arg" 2>/dev/null) || return 1
  [[ $out == *"$want"* ]]
}
stamp() { date +%s; }

if ! reports "$bin/kube-apiserver" --version "Kubernetes $KUBE_VERSION" \
  || ! reports "$bin/kube-controller-manager" --version "Kubernetes $KUBE_VERSION"; then
  minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  ldf="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf="$ldf -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldf="$ldf -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  # k8s.io/kubernetes requires each staging module at v0.0.0; every one must be re-pinned in our go.mod,
  # or the build fails with "unknown revision v0.0.0". Check that before a long build, not after.
  upstream=$(cd "$here/kube" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  missing=$(grep -E '^[[:space:]]+k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$upstream" | awk '{print $1}' | while read -r m; do
    grep -qE "^[[:space:]]+$m => $m v0\.${minor}\." "$here/kube/go.mod" || echo "$m"; done)
  if [ -n "$missing" ]; then echo "kube/go.mod lacks replace lines for: $missing" >&2; exit 1; fi
  echo "building kube-apiserver and kube-controller-manager $KUBE_VERSION into $bin" >&2
  t=$(stamp)
  (cd "$here/kube" && go build -trimpath -ldflags "$ldf" -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
  echo "built kube binaries in $(( $(stamp) - t ))s" >&2
fi

if ! reports "$bin/etcd" --version "etcd Version: $ETCD_VERSION"; then
  echo "building etcd $ETCD_VERSION into $bin" >&2
  t=$(stamp)
  (cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" .)
  echo "built etcd in $(( $(stamp) - t ))s" >&2
fi

# Like helm's own release builds, the default Kubernetes version (what `helm template` assumes without
# --kube-version) follows the client-go it is built with; without it helm assumes v1.20 and refuses a
# chart whose kubeVersion floor is newer. The flags are recorded next to the binary: a change rebuilds.
client_go=$(cd "$here/helm" && go list -m -f '{{.Version}}' k8s.io/client-go)
client_go_minor=${client_go#v0.}; client_go_minor=${client_go_minor%%.*}
helm_ldf="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  helm_ldf="$helm_ldf -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$client_go_minor"
done
if ! reports "$bin/helm" version "$HELM_VERSION" || [ "$(cat "$bin/helm.ldflags" 2>/dev/null)" != "$helm_ldf" ]; then
  echo "building helm $HELM_VERSION into $bin" >&2
  t=$(stamp)
  (cd "$here/helm" && go build -trimpath -ldflags "$helm_ldf" -o "$bin/helm.new" helm.sh/helm/v3/cmd/helm)
  mv -f "$bin/helm.new" "$bin/helm"  # atomic: a concurrent user runs the old or the new binary
  printf '%s' "$helm_ldf" >"$bin/helm.ldflags"
  echo "built helm in $(( $(stamp) - t ))s" >&2
fi

if ! reports "$bin/promtool" --version "promtool, version $PROMETHEUS_VERSION "; then
  if ! grep -qE "^[[:space:]]+github\.com/prometheus/prometheus $PROMETHEUS_MODULE( |$)" "$here/promtool/go.mod"; then
    echo "promtool/go.mod does not require github.com/prometheus/prometheus $PROMETHEUS_MODULE" >&2; exit 1
  fi
  echo "building promtool $PROMETHEUS_VERSION into $bin" >&2
  t=$(stamp)
  # remove_all_sd: rule checks and rule unit tests need no service discovery (a fraction of the build).
  (cd "$here/promtool" && go build -trimpath -tags remove_all_sd \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION -X github.com/prometheus/common/version.Revision=$PROMETHEUS_MODULE" \
    -o "$bin/promtool" github.com/prometheus/prometheus/cmd/promtool)
  echo "built promtool in $(( $(stamp) - t ))s" >&2
fi

if ! reports "$bin/toxiproxy-server" --version "toxiproxy-server version $TOXIPROXY_VERSION"; then
  echo "building toxiproxy-server $TOXIPROXY_VERSION into $bin" >&2
  t=$(stamp)
  (cd "$here/toxiproxy" && go build -trimpath \
    -ldflags "-s -w -X github.com/Shopify/toxiproxy/v2.Version=$TOXIPROXY_VERSION" \
    -o "$bin/toxiproxy-server" github.com/Shopify/toxiproxy/v2/cmd/server)
  echo "built toxiproxy-server in $(( $(stamp) - t ))s" >&2
fi

{ "$bin/kube-apiserver" --version; etcd_out=$("$bin/etcd" --version); echo "${etcd_out%%$'\n'*}"; "$bin/helm" version --short; pt=$("$bin/promtool" --version); echo "${pt%%$'\n'*}"; "$bin/toxiproxy-server" --version; } >&2
echo "$bin"
