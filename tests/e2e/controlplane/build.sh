#!/usr/bin/env bash
# Builds the pinned test-bed binaries (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet, kubectl, helm, promtool, toxiproxy) from the Go module proxy into a cache outside the work tree. A binary is rebuilt
# only when the cached one does not report the pinned version, so warm runs cost a few process starts.
#
#   build.sh [current|compat] [--print-bin|--print-version]
#
# `current` is the newest supported Kubernetes minor (what `make test` runs on); `compat` is the oldest
# supported one (what `make test-compat` runs on). Each has its own module directory, etcd as upstream
# pairs it, and its own cache directory; helm is one binary for both.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
profile=current
if [ "${1:-}" = current ] || [ "${1:-}" = compat ]; then profile=$1; shift; fi
case $profile in
  current) KUBE_VERSION=v1.37.2 ETCD_VERSION=3.7.0 kube_mod=kube etcd_mod=etcd ;;
  compat) KUBE_VERSION=v1.35.4 ETCD_VERSION=3.6.6 kube_mod=kube-compat etcd_mod=etcd-compat ;;
esac
HELM_VERSION=v4.3.2
# Prometheus 3.16.0: its Go module is versioned v0.<minor+300>.<patch>.
PROMETHEUS_VERSION=3.16.0
PROMETHEUS_MODULE=v0.316.0
TOXIPROXY_VERSION=2.5.0
cache=${DBAASCTL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbaasctl}
bin=${DBAASCTL_TESTBED_BIN:-$cache/bin/kube-$KUBE_VERSION}

if [ "${1:-}" = "--print-bin" ]; then echo "$bin"; exit 0; fi
if [ "${1:-}" = "--print-version" ]; then echo "$KUBE_VERSION"; exit 0; fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
mkdir -p "$bin"

# Capture first, then match: `cmd | grep -q` can kill cmd with SIGPIPE, which pipefail turns into a failure.
reports() { # reports BINARY WANT ARGS...: BINARY ARGS prints WANT
  local bin=$1 want=$2 out
  shift 2
  [ -x "$bin" ] || return 1
  out=$(timeout 60 "$bin" "$@" 2>/dev/null) || return 1  # a wrong argument must not start a server
  [[ $out == *"$want"* ]]
}
stamp() { date +%s; }

kube_cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet)
stale=()
for c in "${kube_cmds[@]}"; do
  reports "$bin/$c" "Kubernetes $KUBE_VERSION" --version || stale+=("k8s.io/kubernetes/cmd/$c")
done
reports "$bin/kubectl" "Client Version: $KUBE_VERSION" version --client || stale+=(k8s.io/kubernetes/cmd/kubectl)
if [ ${#stale[@]} -gt 0 ]; then
  minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  ldf="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf="$ldf -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldf="$ldf -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  # k8s.io/kubernetes requires each staging module at v0.0.0; every one must be re-pinned in our go.mod,
  # or the build fails with "unknown revision v0.0.0". Check that before a long build, not after.
  upstream=$(cd "$here/$kube_mod" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  missing=$(grep -E '^[[:space:]]+k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$upstream" | awk '{print $1}' | while read -r m; do
    grep -qE "^[[:space:]]+$m => $m v0\.${minor}\." "$here/$kube_mod/go.mod" || echo "$m"; done)
  if [ -n "$missing" ]; then echo "$kube_mod/go.mod lacks replace lines for: $missing" >&2; exit 1; fi
  echo "building ${stale[*]##*/} $KUBE_VERSION into $bin" >&2
  t=$(stamp)
  (cd "$here/$kube_mod" && go build -trimpath -ldflags "$ldf" -o "$bin/" "${stale[@]}")
  echo "built kube binaries in $(( $(stamp) - t ))s" >&2
fi

if ! reports "$bin/etcd" "etcd Version: $ETCD_VERSION" --version; then
  echo "building etcd $ETCD_VERSION into $bin" >&2
  t=$(stamp)
  (cd "$here/$etcd_mod" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" .)
  echo "built etcd in $(( $(stamp) - t ))s" >&2
fi

# Helm 4 takes its default Kubernetes version (what `helm template` assumes offline) from the
# client-go it is built with, so the chart's kubeVersion floor holds without --kube-version.
if ! reports "$bin/helm" "$HELM_VERSION" version; then
  echo "building helm $HELM_VERSION into $bin" >&2
  t=$(stamp)
  (cd "$here/helm" && go build -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
    -o "$bin/helm" helm.sh/helm/v4/cmd/helm)
  echo "built helm in $(( $(stamp) - t ))s" >&2
fi

if ! reports "$bin/promtool" "promtool, version $PROMETHEUS_VERSION " --version; then
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

if ! reports "$bin/toxiproxy-server" "toxiproxy-server version $TOXIPROXY_VERSION" --version; then
  echo "building toxiproxy-server $TOXIPROXY_VERSION into $bin" >&2
  t=$(stamp)
  (cd "$here/toxiproxy" && go build -trimpath \
    -ldflags "-s -w -X github.com/Shopify/toxiproxy/v2.Version=$TOXIPROXY_VERSION" \
    -o "$bin/toxiproxy-server" github.com/Shopify/toxiproxy/v2/cmd/server)
  echo "built toxiproxy-server in $(( $(stamp) - t ))s" >&2
fi

{ "$bin/kube-apiserver" --version; "$bin/kubelet" --version; etcd_out=$("$bin/etcd" --version); echo "${etcd_out%%$'\n'*}"; "$bin/helm" version --short; pt=$("$bin/promtool" --version); echo "${pt%%$'\n'*}"; "$bin/toxiproxy-server" --version; } >&2
echo "$bin"
