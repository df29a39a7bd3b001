#!/bin/sh
# Podman as the container engine for testcontainers (test/multihost/containers.spec.ts)
# and for building docker/*: on a machine without Docker, as root.
#   1. writes a containers.conf (runc; default ulimits at or below this
#      machine's hard limits, which podman's defaults exceed here);
#   2. starts `podman system service` on a unix socket (unless it answers already);
#   3. builds the base image amime-base:node<version> (Debian bookworm minbase
#      from debootstrap + this host's node binary), once: cached by tag.
# Prints the environment to use (DOCKER_HOST and friends) on its last lines.
# Exit codes: 0 ready; 1 a step failed (its message says which); 2 not usable
# here (not root, podman or debootstrap missing).
#
# Env: AMIME_PODMAN_DIR (default /run/amime-podman): socket, config, pid file;
#      DEBIAN_MIRROR (default: the first URI in /etc/apt/sources.list.d/debian.sources,
#      else http://deb.debian.org/debian).
set -eu

dir=${AMIME_PODMAN_DIR:-/run/amime-podman}
sock="$dir/podman.sock"
conf="$dir/containers.conf"

say() { printf 'podman-setup: %s\n' "$*" >&2; }
unusable() { say "$*"; exit 2; }

[ "$(id -u)" = 0 ] || unusable "not root: rootful podman with runc is what works here"
command -v podman >/dev/null || unusable "no podman (apt-get install podman runc uidmap slirp4netns fuse-overlayfs)"
command -v runc >/dev/null || unusable "no runc (apt-get install runc)"
command -v node >/dev/null || unusable "no node on PATH"

mkdir -p "$dir"
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
nofile=$(( hard < 65536 ? hard : 65536 ))
hardp=$(awk '/^Max processes/ { print $4 }' /proc/self/limits)
[ "$hardp" = unlimited ] && hardp=1048576
nproc=$(( hardp < 32768 ? hardp : 32768 ))
old=$(cat "$conf" 2>/dev/null || true)
cat >"$conf" <<EOF
# Written by tools/scripts/podman-setup.sh.
[containers]
# podman's defaults (nofile 1048576, nproc = the host's) can be above what runc may set
# here ("error setting rlimits ... operation not permitted"): at most the hard limits.
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF="$conf"

# GET /_ping on the socket (node rather than curl: a fresh Debian may have no curl).
# A service this script started earlier read the old config: restart it.
if [ "$old" != "$(cat "$conf")" ] && [ -s "$dir/service.pid" ] && kill "$(cat "$dir/service.pid")" 2>/dev/null; then
  say "containers.conf changed: restarting the podman service this script started"
  sleep 1
fi

ping() {
  node -e 'require("http").get({ socketPath: process.argv[1], path: "/_ping", timeout: 3000 }, (r) => process.exit(r.statusCode === 200 ? 0 : 1)).on("error", () => process.exit(1)).on("timeout", () => process.exit(1))' "$sock" 2>/dev/null
}
# A service started from a directory since deleted (a CI checkout that was removed) still
# answers pings but cannot start containers (conmon: "Failed to get working directory",
# the API: "write child: broken pipe"): restart it.
if [ -s "$dir/service.pid" ]; then
  pid=$(cat "$dir/service.pid")
  case "$(readlink "/proc/$pid/cwd" 2>/dev/null)" in
    *" (deleted)") say "the podman service (pid $pid) lost its working directory: restarting it"; kill "$pid" 2>/dev/null; sleep 1 ;;
  esac
fi
if ping; then
  say "podman service already answers on $sock"
else
  rm -f "$sock"
  # --time 0: serve until stopped (the default ends it after 5 s idle).
  # From /: the service and every conmon it starts keep this working directory.
  (cd / && exec nohup podman system service --time 0 "unix://$sock" >"$dir/service.log" 2>&1) &
  echo $! >"$dir/service.pid"
  i=0
  until ping; do
    i=$((i + 1))
    [ $i -le 50 ] || { say "podman system service did not answer on $sock within 10 s: $(tail -5 "$dir/service.log")"; exit 1; }
    sleep 0.2
  done
  say "podman system service (pid $(cat "$dir/service.pid")) on $sock"
fi

version=$(node -p 'process.versions.node')
image="localhost/amime-base:node$version"
if podman image exists "$image"; then
  say "base image $image cached"
else
  command -v debootstrap >/dev/null || unusable "no debootstrap (apt-get install debootstrap) to build $image"
  mirror=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\([^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}
  mirror=${mirror:-http://deb.debian.org/debian}
  rootfs=$(mktemp -d /var/tmp/amime-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  say "building $image: debootstrap --variant=minbase bookworm from $mirror (about a minute)"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$mirror" >"$dir/debootstrap.log" 2>&1 || {
    say "debootstrap failed: $(tail -5 "$dir/debootstrap.log")"
    exit 1
  }
  cp "$(command -v node)" "$rootfs/usr/bin/node"
  rm -rf "$rootfs/var/cache/apt/archives"/*.deb "$rootfs/var/lib/apt/lists"/*
  tar -C "$rootfs" -c . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/usr/bin/node"]' - "$image" >/dev/null
  say "built $image ($(podman image inspect --format '{{.Size}}' "$image") bytes)"
fi

echo "export CONTAINERS_CONF=$conf"
echo "export DOCKER_HOST=unix://$sock"
echo "export TESTCONTAINERS_RYUK_DISABLED=true"
echo "export TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1"
echo "export AMIME_BASE_IMAGE=$image"
