#!/usr/bin/env bash
# Installs the system tools media-jobs needs on Debian/Ubuntu: ffmpeg (with ffprobe),
# yt-dlp, nats-server, redis-server, and chromium for the web console's browser tests.
# Only what is missing is installed, so a second run changes nothing and prints one line.
#
# yt-dlp: Debian's package (bookworm: 2023.03.04) is enough for the tests, which download
# from a local server, but too old for YouTube today. When this machine's Python can
# install a current yt-dlp quickly, that one is put first on PATH; when it cannot, the
# Debian one stays. Setting YTDLP_PATH skips all of this (the services use that path).
#
#   npm run setup                 install what is missing
#   npm run setup -- --upgrade    also upgrade the pip-installed yt-dlp
set -euo pipefail

upgrade=false
for arg in "$@"; do
  case "$arg" in
    --upgrade) upgrade=true ;;
    -h | --help)
      sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "setup: unknown argument '$arg' (try --help)" >&2
      exit 2
      ;;
  esac
done

say() { printf 'setup: %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  # sudo drops the environment; env passes DEBIAN_FRONTEND on. -n: never wait for a password
  # that nobody can type (CI has no stdin).
  if have sudo; then SUDO=(sudo -n env DEBIAN_FRONTEND=noninteractive); else SUDO=(false); fi
fi

# command -> Debian package that provides it
declare -A PACKAGE_OF=(
  [ffmpeg]=ffmpeg
  [ffprobe]=ffmpeg
  [nats-server]=nats-server
  [redis-server]=redis-server
  [redis-cli]=redis-tools
)
# Debian's yt-dlp also pulls in python3, which the pip route below needs.
if [ -z "${YTDLP_PATH:-}" ]; then PACKAGE_OF[yt-dlp]=yt-dlp; fi

missing=()
for cmd in "${!PACKAGE_OF[@]}"; do
  # nats-server lives in /usr/sbin, which a non-root PATH may lack.
  if ! have "$cmd" && [ ! -x "/usr/sbin/$cmd" ]; then
    pkg=${PACKAGE_OF[$cmd]}
    [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
  fi
done
# Debian's chromium, which the web console's tests drive with playwright-core (no browser is
# ever downloaded); they expect it at /usr/bin/chromium.
if [ ! -x /usr/bin/chromium ]; then missing+=(chromium); fi
# yt-dlp only recommends ca-certificates, and --no-install-recommends skips it: without it
# every https download fails.
if [[ " ${missing[*]} " == *" yt-dlp "* ]] && [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then
  missing+=(ca-certificates)
fi

if [ ${#missing[@]} -gt 0 ]; then
  if ! have apt-get; then
    say "missing: ${missing[*]}. This script installs with apt-get (Debian/Ubuntu); install them by hand." >&2
    exit 1
  fi
  if [ "${SUDO[*]}" = false ]; then
    say "missing: ${missing[*]}. Run this script as root or install sudo." >&2
    exit 1
  fi
  say "installing ${missing[*]} with apt-get (this takes a minute or two)"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  say "installed ${missing[*]}"
fi

if [ ! -x /usr/sbin/nats-server ] && ! have nats-server; then
  say "nats-server is still missing after apt-get" >&2
  exit 1
fi
if ! have nats-server; then
  say "note: nats-server is in /usr/sbin, which is not on your PATH; add it (export PATH=\$PATH:/usr/sbin)"
fi

# --- yt-dlp ----------------------------------------------------------------------------
# A current yt-dlp goes in its own virtualenv (a `pip --user` install would also shadow the
# module that Debian's /usr/bin/yt-dlp imports); a link in /usr/local/bin (root) or
# ~/.local/bin puts it ahead of /usr/bin/yt-dlp on PATH.
venv="${XDG_DATA_HOME:-$HOME/.local/share}/media-jobs/yt-dlp"

current_ytdlp() {
  [ -x "$venv/bin/yt-dlp" ] && "$venv/bin/yt-dlp" --version >/dev/null 2>&1 && echo "$venv/bin/yt-dlp"
}

link_current_ytdlp() {
  local link_dir link installed
  if [ "$(id -u)" -eq 0 ]; then link_dir=/usr/local/bin; else link_dir="$HOME/.local/bin"; fi
  link="$link_dir/yt-dlp"
  installed=$(current_ytdlp || true)
  if { [ -z "$installed" ] || $upgrade; } && have python3; then
    # One quick attempt: no retries, short timeouts; a machine without a package index
    # keeps Debian's yt-dlp.
    if { [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"; } >/tmp/media-jobs-pip.log 2>&1 &&
      timeout 60 "$venv/bin/pip" install --quiet --disable-pip-version-check \
        --retries 0 --timeout 10 -U yt-dlp >>/tmp/media-jobs-pip.log 2>&1; then
      installed=$(current_ytdlp || true)
    else
      say "could not install a current yt-dlp with pip (see /tmp/media-jobs-pip.log); keeping $(command -v yt-dlp || echo none)"
    fi
  fi
  [ -n "$installed" ] || return 0
  if [ "$(readlink -f "$link" 2>/dev/null)" != "$(readlink -f "$installed")" ]; then
    if [ -e "$link" ] && [ ! -L "$link" ]; then
      say "leaving $link alone (not a link made by this script); the current yt-dlp is $installed"
    else
      mkdir -p "$link_dir"
      ln -sf "$installed" "$link"
      say "yt-dlp $("$installed" --version) linked at $link"
    fi
  fi
  local resolved
  resolved=$(command -v yt-dlp || true)
  if [ "$(readlink -f "$resolved")" != "$(readlink -f "$installed")" ]; then
    say "note: PATH finds ${resolved:-no yt-dlp} before $link; put $link_dir first on PATH or set YTDLP_PATH=$installed"
  fi
}

if [ -n "${YTDLP_PATH:-}" ]; then
  ytdlp=$YTDLP_PATH
else
  link_current_ytdlp
  ytdlp=$(command -v yt-dlp || true)
fi
if [ -z "$ytdlp" ] || ! "$ytdlp" --version >/dev/null 2>&1; then
  say "yt-dlp does not run (${ytdlp:-not on PATH}); set YTDLP_PATH or fix PATH" >&2
  exit 1
fi

nats=$(command -v nats-server || echo /usr/sbin/nats-server)
say "ready: ffmpeg $(ffmpeg -version | sed -n '1s/^ffmpeg version \([^ ]*\).*/\1/p'), yt-dlp $("$ytdlp" --version) ($ytdlp), nats-server $("$nats" --version | sed 's/^nats-server: v\{0,1\}//'), redis $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p'), chromium $(/usr/bin/chromium --version 2>/dev/null | sed -n 's/^Chromium \([^ ]*\).*/\1/p')"
