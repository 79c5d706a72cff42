# Shared by scripts/test and scripts/demo. Source it; do not run it.

say() { printf '\n==> %s\n' "$*" >&2; }
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

# Prints the calling script's header comment (its usage) without the leading "# ".
usage_from_header() {
  sed -n '2,/^[^#]/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

# For scripts that take no options: answers -h/--help with the usage and refuses anything
# else that looks like an option. Call as: no_options_but_help "$@"
no_options_but_help() {
  local a
  for a in "$@"; do
    case "$a" in
      -h|--help) usage_from_header; exit 0 ;;
      -*) die "unknown option $a (see --help)" ;;
    esac
  done
}

# Debian packages the build and the tests need.
PACKAGES=(
  libpam0g-dev      # libpam and libpam_misc to link the test driver against
  libpam-modules    # pam_permit.so, stacked beside the module in tests
  oathtool          # computes TOTP codes independently of toopherd
  pamtester         # for trying a PAM stack by hand
  bubblewrap        # a private /etc/pam.d for hand tests
  util-linux        # setpriv and unshare: a non-root peer, a private /etc/pam.d
  openssh-server    # the real sshd of the root suites
  openssh-client    # the real ssh client
  sudo              # the real sudo of the root suites
  valgrind          # memcheck over the module in root_valgrind
  sqlite3           # inspecting toopherd's database by hand
  postgresql        # the temporary PostgreSQL clusters of the fleet tests (initdb, pg_ctl)
  ca-certificates
  pkg-config
  gcc
)

# Installs whatever of $PACKAGES (and "$@") is missing; without root, fails naming them.
ensure_packages() {
  install_missing "${PACKAGES[@]}" "$@"
}

# Prints the named Debian packages that are not installed.
missing_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || printf '%s\n' "$p"
  done
}

# Installs whatever of the named Debian packages is missing, saying which first; without
# root, fails naming them.
install_missing() {
  local missing=()
  mapfile -t missing < <(missing_packages "$@")
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    die "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})"
  fi
  say "installing Debian packages: ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
}

ensure_rust() {
  command -v cargo >/dev/null || die "cargo is not installed (install the Rust toolchain with rustup)"
}

# The cargo target directory (respects CARGO_TARGET_DIR).
target_dir() {
  echo "${CARGO_TARGET_DIR:-$ROOT/target}"
}

# The module as the packages ship it, into target/release: built as a cdylib alone, since
# cargo applies no LTO to a crate that is also an rlib (pam_toopher is one, for the fuzz
# targets), with the release profile's fat LTO over std and its crates: about 64 KB smaller stripped
# (doc/benchmark.md, "Module size (codec)"). Extra arguments go to cargo (-j, --locked).
build_release_module() {
  cargo rustc --release -p pam_toopher --lib --crate-type cdylib "$@"
}
