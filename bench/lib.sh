# Helpers shared by the bench scripts (sourced; expects REPO to be set).

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# apt_install PACKAGE...: installs Debian packages, as root or through sudo.
apt_install() {
    [ $# -gt 0 ] || return 0
    log "installing missing packages: $*"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "missing $* and not root (no sudo): install them first"
        sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# build_cairn: sets CAIRN_BIN, building the release binary unless CAIRN_BIN names one.
build_cairn() {
    if [ -n "${CAIRN_BIN:-}" ]; then
        [ -x "$CAIRN_BIN" ] || die "CAIRN_BIN=$CAIRN_BIN is not executable"
        return 0
    fi
    local target=${CARGO_TARGET_DIR:-$REPO/target}
    log "building cairn (release, target dir $target)"
    (cd "$REPO" && CARGO_TARGET_DIR=$target cargo build --release --quiet) >&2
    CAIRN_BIN=$target/release/cairn
}
