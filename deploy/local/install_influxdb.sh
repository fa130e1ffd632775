#!/usr/bin/env bash
# Build InfluxDB OSS 1.12 from its Go module into the citywatch cache (idempotent).
#
# Why the extra steps: influxd links flux, whose libflux is Rust, compiled through
# InfluxData's pkg-config wrapper. The flux module pins an old Rust toolchain that rustup
# cannot fetch here, so RUSTUP_TOOLCHAIN=stable overrides it; crates locked in 2023 that no
# longer compile on today's Rust are bumped in the wrapper's writable copy of flux.
set -euo pipefail
INFLUX_VERSION="${CITYWATCH_INFLUXDB_VERSION:-v1.12.4}"
PKGCONFIG_VERSION="${CITYWATCH_PKGCONFIG_VERSION:-v0.2.14}"
CACHE="${CITYWATCH_CACHE_DIR:-$HOME/.cache/citywatch}"
BIN="$CACHE/bin/influxd-$INFLUX_VERSION"
if [ -x "$BIN" ]; then echo "influxd $INFLUX_VERSION already built: $BIN"; exit 0; fi
command -v go >/dev/null || { echo "ERROR: go not found; install Go >= 1.22" >&2; exit 1; }
command -v cargo >/dev/null || { echo "ERROR: cargo not found; install Rust (rustup)" >&2; exit 1; }
export GOPATH="$CACHE/go" GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build-cache"
export GOFLAGS=-modcacherw GOBIN="$CACHE/go/bin" RUSTUP_TOOLCHAIN=stable
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
mkdir -p "$CACHE/bin" "$GOBIN"
go install "github.com/influxdata/pkg-config@$PKGCONFIG_VERSION"
export PKG_CONFIG="$GOBIN/pkg-config"
export PATH="$GOBIN:$PATH"
# libflux's default "strict" feature turns every warning into an error, and rustc has gained
# lints since 2023. flux-core is also a build dependency, which RUSTFLAGS does not reach when
# a --target is given, so the feature is switched off in the (writable) module copy instead.
flux_version=$(go mod download -json "github.com/influxdata/influxdb@$INFLUX_VERSION" \
  | sed -n 's/.*"GoMod": "\(.*\)",/\1/p' | xargs grep -m1 'github.com/influxdata/flux ' | awk '{print $2}')
flux_dir=$(go mod download -json "github.com/influxdata/flux@$flux_version" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
sed -i 's/^default = \["strict"\]/default = []/' "$flux_dir/libflux/flux-core/Cargo.toml"
sed -i 's/^default = \["strict", "cffi"\]/default = ["cffi"]/' "$flux_dir/libflux/flux/Cargo.toml"
echo "building influxd $INFLUX_VERSION (first build takes a while on 2 cores)..."
# The release version is stamped in so /ping and `influxd version` report it.
go install -ldflags "-X main.version=${INFLUX_VERSION#v} -X main.branch=$INFLUX_VERSION -X main.commit=go-module" \
  "github.com/influxdata/influxdb/cmd/influxd@$INFLUX_VERSION"
cp "$GOBIN/influxd" "$BIN"
# The binary is what is cached; the ~1.3 GB of intermediate objects (Go build cache, libflux's
# cargo target dir) only matter for a rebuild. Downloads (module cache) are kept.
if [ -z "${CITYWATCH_KEEP_BUILD_CACHE:-}" ]; then
  go clean -cache
  rm -rf "$flux_dir/libflux/target"
fi
echo "built $BIN"
