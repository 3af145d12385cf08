#!/usr/bin/env bash
# Install strongSwan 6.0.1 for the interop lab into interop/.cache/strongswan/.
#
# The upstream tarball comes from Debian's *source* package (suites trixie and
# trixie-security), fetched through a private apt configuration so that the
# system's own source lists are never touched. It is built from the upstream
# strongswan_6.0.1.orig.tar.bz2 (Debian's patches change configure.ac and would
# need automake) with --disable-defaults and exactly the plugins the lab needs.
#
# Idempotent: when the build is already installed it prints the charon version
# and exits 0 without touching the network. Works on Debian 12 and Debian 13.
#
# Usage: interop/install-strongswan.sh [--force]
#   --force   rebuild even when an installation is present
#
# Environment:
#   PQIKE_STRONGSWAN_CACHE  cache directory (default: <repo>/interop/.cache/strongswan)
set -euo pipefail

SW_VERSION=6.0.1
# Enough plugins for every proposal the project uses, and nothing else.
# `ml` provides ML-KEM where the system OpenSSL is older than 3.5 (Debian 12).
PLUGINS="charon swanctl vici ikev2 ikev1 ml openssl nonce random pem x509 pkcs1 pkcs8 pubkey
kernel-netlink kernel-libipsec socket-default sha2 hmac kdf gcm aes curve25519 chapoly
eap-identity eap-md5 updown constraints revocation load-tester"
# Packages needed to fetch, build and run the lab (tcpdump captures the datagrams).
BUILD_PACKAGES="gcc libc6-dev make pkg-config libssl-dev bzip2 iproute2 tcpdump util-linux"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${PQIKE_STRONGSWAN_CACHE:-$HERE/.cache/strongswan}"
PREFIX="$CACHE/install"
# charon's PID file directory is fixed at build time. The lab bind-mounts a
# per-daemon directory over it inside a private mount namespace (see lab.py),
# so two daemons built from this one tree never see each other's PID file.
PIDDIR="$PREFIX/run"
STAMP="$PREFIX/.pqike-build"
CHARON="$PREFIX/libexec/ipsec/charon"

log() { printf 'install-strongswan: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

force=no
for arg in "$@"; do
    case "$arg" in
        --force) force=yes ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) die "unknown argument '$arg' (use --force or --help)" ;;
    esac
done

# What identifies a build: version, plugin set and piddir. Change any of them
# and the next run rebuilds.
build_id() {
    printf '%s\n%s\n%s\n' "$SW_VERSION" "$(echo $PLUGINS)" "$PIDDIR"
}

print_version() {
    "$CHARON" --version 2>/dev/null | head -n1 || true
}

if [[ "$force" == no && -x "$CHARON" && -f "$STAMP" && "$(cat "$STAMP")" == "$(build_id)" ]]; then
    log "strongSwan already installed in $PREFIX"
    print_version
    exit 0
fi

[[ "$(id -u)" -eq 0 ]] || die "must run as root: it installs build packages with apt-get and the lab needs network namespaces"
command -v apt-get >/dev/null || die "apt-get not found: this script supports Debian 12 and 13 only"

mkdir -p "$CACHE"
# Serialise concurrent runs (parallel test sessions) on one cache directory.
exec 9>"$CACHE/.lock"
flock 9
# Another run may have finished the build while we waited for the lock.
if [[ "$force" == no && -x "$CHARON" && -f "$STAMP" && "$(cat "$STAMP")" == "$(build_id)" ]]; then
    log "strongSwan already installed in $PREFIX"
    print_version
    exit 0
fi

# --- 1. build packages, only when missing ----------------------------------
missing=()
for pkg in $BUILD_PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    log "installing missing packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >"$CACHE/apt-install.log" 2>&1; then
        # Stale or absent package lists are the usual cause: refresh and retry once.
        apt-get --error-on=any update >>"$CACHE/apt-install.log" 2>&1 \
            || die "apt-get update failed (no network to Debian's archive?); see $CACHE/apt-install.log"
        apt-get install -y --no-install-recommends "${missing[@]}" >>"$CACHE/apt-install.log" 2>&1 \
            || die "apt-get install ${missing[*]} failed; see $CACHE/apt-install.log"
    fi
fi

# --- 2. private apt configuration for the source package --------------------
# Follow the mirrors the machine's own apt sources use: only Debian's archive is
# reachable from the lab machines, and through whatever mirror they are set up with.
# Prints "main_uri security_uri" (either may be empty).
system_mirrors() {
    local files=()
    [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
    # apt itself only reads *.list and *.sources in sources.list.d.
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] && files+=("$f")
    done
    ((${#files[@]})) || { echo " "; return; }
    awk '
        function consider(uri, suites,    n, i, s, a) {
            n = split(suites, a, /[ \t]+/)
            for (i = 1; i <= n; i++) {
                s = a[i]
                if (s !~ /^(bullseye|bookworm|trixie|forky|duke|sid|oldstable|stable|testing|unstable)(-(updates|backports|security|proposed-updates))?$/) continue
                sub(/\/+$/, "", uri)
                if (s ~ /-security$/) { if (sec == "") sec = uri }
                else if (main == "") main = uri
            }
        }
        function flush() {
            if (ftype ~ /deb/ && enabled != "no" && furi != "") {
                n = split(furi, u, /[ \t]+/)
                for (j = 1; j <= n; j++) if (u[j] != "") consider(u[j], fsuites)
            }
            ftype = ""; furi = ""; fsuites = ""; enabled = ""
        }
        FILENAME ~ /\.sources$/ {
            if (FILENAME != last) { flush(); last = FILENAME }
            if ($0 ~ /^[ \t]*$/) { flush(); next }
            if ($0 ~ /^#/) next
            line = $0
            key = tolower(line); sub(/:.*/, "", key)
            val = line; sub(/^[^:]*:[ \t]*/, "", val)
            if (key == "types") ftype = val
            else if (key == "uris") furi = val
            else if (key == "suites") fsuites = val
            else if (key == "enabled") enabled = tolower(val)
            next
        }
        {
            if (FILENAME != last) { flush(); last = FILENAME }
            line = $0
            sub(/#.*/, "", line)
            gsub(/\[[^]]*\]/, "", line)   # drop [signed-by=... arch=...] options
            n = split(line, w, /[ \t]+/)
            k = 1; while (k <= n && w[k] == "") k++
            if (w[k] != "deb" && w[k] != "deb-src") next
            if (k + 2 <= n) consider(w[k + 1], w[k + 2])
        }
        END { flush(); print main " " sec }
    ' "${files[@]}"
}

read -r MAIN_URI SEC_URI <<<"$(system_mirrors) "
if [[ -z "$MAIN_URI" ]]; then
    MAIN_URI=http://deb.debian.org/debian
    log "no Debian mirror found in /etc/apt/sources.list*; using $MAIN_URI"
fi
if [[ -z "$SEC_URI" ]]; then
    case "$MAIN_URI" in
        */debian) SEC_URI="${MAIN_URI}-security" ;;
        *) SEC_URI=http://deb.debian.org/debian-security ;;
    esac
fi
KEYRING=""
for k in /usr/share/keyrings/debian-archive-keyring.gpg /usr/share/keyrings/debian-archive-keyring.pgp; do
    [[ -f "$k" ]] && { KEYRING="$k"; break; }
done
[[ -n "$KEYRING" ]] || die "Debian archive keyring not found (apt-get install debian-archive-keyring)"

APTDIR="$CACHE/apt"
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial"
# The security archive is listed first: the security version's files live only
# there, and listing it first keeps apt from asking the main archive for them (404).
cat >"$APTDIR/sources.list" <<EOF
deb-src [signed-by=$KEYRING] $SEC_URI trixie-security main
deb-src [signed-by=$KEYRING] $MAIN_URI trixie main
EOF
APT_OPTS=(
    -o "Dir::Etc::sourcelist=$APTDIR/sources.list"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$APTDIR/lists"
    -o "Dir::Cache=$APTDIR/cache"
    -o "APT::Sandbox::User=root"
    -o "Acquire::Retries=3"
)

DLDIR="$CACHE/download"
ORIG="$DLDIR/strongswan_${SW_VERSION}.orig.tar.bz2"
if [[ ! -s "$ORIG" ]]; then
    log "fetching the strongSwan source package index (trixie, trixie-security) from $SEC_URI and $MAIN_URI"
    # --error-on=any: a fetch failure (no network) is otherwise only a warning.
    if ! apt-get "${APT_OPTS[@]}" --error-on=any update >"$CACHE/apt-source.log" 2>&1; then
        if grep -qiE 'resolv|connect|unreachable|timed out' "$CACHE/apt-source.log"; then
            die "cannot reach Debian's archive ($MAIN_URI, $SEC_URI): no network? see $CACHE/apt-source.log"
        fi
        die "apt-get update of the private source lists failed; see $CACHE/apt-source.log"
    fi
    # The newest Debian revision of upstream $SW_VERSION (trixie or its security update).
    deb_version="$(apt-cache "${APT_OPTS[@]}" showsrc strongswan 2>/dev/null \
        | awk '/^Version:/ {print $2}' | grep -E "^${SW_VERSION//./\\.}-" | sort -V | tail -n1 || true)"
    [[ -n "$deb_version" ]] || die "no strongswan ${SW_VERSION} source package found in trixie/trixie-security"
    log "downloading source package strongswan=$deb_version"
    rm -rf "$DLDIR.partial"
    mkdir -p "$DLDIR.partial"
    (cd "$DLDIR.partial" && apt-get "${APT_OPTS[@]}" source --download-only "strongswan=$deb_version") \
        >>"$CACHE/apt-source.log" 2>&1 \
        || die "apt-get source --download-only strongswan=$deb_version failed; see $CACHE/apt-source.log"
    [[ -s "$DLDIR.partial/strongswan_${SW_VERSION}.orig.tar.bz2" ]] \
        || die "the source package has no strongswan_${SW_VERSION}.orig.tar.bz2"
    rm -rf "$DLDIR"
    mv "$DLDIR.partial" "$DLDIR"
fi

# --- 3. build from the upstream tarball ---------------------------------------
SRCDIR="$CACHE/src"
rm -rf "$SRCDIR"
mkdir -p "$SRCDIR"
tar -xjf "$ORIG" -C "$SRCDIR"
cd "$SRCDIR/strongswan-${SW_VERSION}"

enable_flags=()
for p in $PLUGINS; do enable_flags+=("--enable-$p"); done

log "configuring (prefix $PREFIX, piddir $PIDDIR)"
rm -rf "$PREFIX"
./configure --prefix="$PREFIX" --sysconfdir="$PREFIX/etc" --with-piddir="$PIDDIR" \
    --disable-defaults "${enable_flags[@]}" --disable-dependency-tracking \
    >"$CACHE/configure.log" 2>&1 || die "configure failed; see $CACHE/configure.log"
log "building (make -j2), about a minute and a half"
make -j2 >"$CACHE/make.log" 2>&1 || die "make failed; see $CACHE/make.log"
make install >"$CACHE/make-install.log" 2>&1 || die "make install failed; see $CACHE/make-install.log"
mkdir -p "$PIDDIR"

[[ -x "$CHARON" ]] || die "make install did not produce $CHARON"
# ML-KEM must be available whatever the system OpenSSL is: the ml plugin gives it.
[[ -f "$PREFIX/lib/ipsec/plugins/libstrongswan-ml.so" ]] || die "the ml plugin (ML-KEM) was not built; see $CACHE/configure.log"
build_id >"$STAMP"
log "installed strongSwan into $PREFIX"
print_version
