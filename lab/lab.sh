#!/usr/bin/env bash
# The local lab: two independent libvirt "hosts" (a and b) on this machine, a shared snapshot
# repository, and a tiny test guest (Debian kernel + busybox initramfs + lab/guest/pvguest.c).
#
#   bash lab/lab.sh up              install what is missing, build the guest (cached), start both hosts
#   bash lab/lab.sh down [--purge]  stop everything and remove .lab/ (except the guest cache unless --purge)
#   bash lab/lab.sh status          exit 0 only when both hosts answer
#
# Each host is a session-mode libvirt daemon (virtqemud, or libvirtd where the modular daemons
# are not packaged, as on Debian 12) run by its own unprivileged user (pvlab-a, pvlab-b), with
# XDG_* pointed at .lab/<host>/ (or /run/pvlab-<hash>/<host> when the repo path is too long for
# unix sockets, see host_dir). Root talks to it with
#   qemu:///session?socket=<repo>/.lab/<host>/run/libvirt/<daemon>-sock
# (daemon = libvirt or virtqemud). Its QEMU processes run as that user, so every file a domain of
# host X must open (disk, state file) must be readable/writable by pvlab-X (state.json gives
# user/uid/gid). Each host has a dir storage pool "pvlab" on .lab/<host>/storage.
# .lab/repo (mode 1777, group pvlab) stands in for shared storage.
# Guest (.lab/guest, rebuilt only when its inputs change): vmlinuz = the Debian kernel, vmlinux =
# the same kernel uncompressed for QEMU's PVH entry (boots ~3 s faster under TCG; state.json
# guest.kernel), initrd.gz = busybox + lab/guest/pvguest.c.
# up/down hold a lock (flock on lab/), so concurrent callers run one after the other.
# Needs root, Debian/Ubuntu (apt-get) for the package install, and no network beyond loopback.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
LAB="$ROOT/.lab"
GUEST_DIR="$LAB/guest"
REPO_DIR="$LAB/repo"
STATE="$LAB/state.json"
GUEST_SRC="$ROOT/lab/guest/pvguest.c"
HOSTS=(a b)
USER_PREFIX="pvlab-"
SHARED_GROUP="pvlab"
POOL="pvlab"
GUEST_BUILD_VERSION=3 # bump when the initramfs layout or the init script changes
export LC_ALL=C

log() { printf '[lab] %s\n' "$*" >&2; }
warn() { printf '[lab] WARNING: %s\n' "$*" >&2; }
# die "what failed" "what to do" ...
die() {
  printf '[lab] ERROR: %s\n' "$1" >&2
  shift
  local l
  for l in "$@"; do printf '[lab]   -> %s\n' "$l" >&2; done
  exit 1
}

usage() {
  cat >&2 <<EOF
usage: bash lab/lab.sh up | down [--purge] | status | pids a|b
  up      install missing packages, build the guest (cached in .lab/guest), start hosts a and b
  down    destroy every lab domain, stop both daemons, remove .lab/ except the guest cache
          (--purge: the guest cache too)
  status  show whether each host answers and its domains; exit 0 only if both are up
EOF
  exit 2
}

now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- per-host paths

host_user() { printf '%s%s' "$USER_PREFIX" "$1"; }
# Where a host's daemon keeps its state (config, run, cache, log). Unix socket paths are limited
# to 107 bytes and QEMU's monitor socket sits at
#   <hostdir>/config/libvirt/qemu/lib/domain-<id>-<first 20 chars of name>/monitor.sock
# (~71 bytes after <hostdir>), so <hostdir> must stay short: <repo>/.lab/<host> when that is at
# most 34 bytes, else /run/pvlab-<hash of the repo path>/<host> (up says so).
short_base() { printf '/run/pvlab-%s' "$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"; }
host_dir() {
  local d="$LAB/$1"
  if ((${#d} > 34)); then d="$(short_base)/$1"; fi
  printf '%s' "$d"
}
# The host's storage pool directory: always under the repo.
host_storage() { printf '%s/%s/storage' "$LAB" "$1"; }
host_runtime() { printf '%s/run' "$(host_dir "$1")"; }

# The daemon binary and its socket name: virtqemud where packaged, else the monolithic libvirtd.
daemon_bin() {
  if command -v virtqemud >/dev/null 2>&1; then command -v virtqemud
  elif command -v libvirtd >/dev/null 2>&1; then command -v libvirtd
  elif [[ -x /usr/sbin/virtqemud ]]; then echo /usr/sbin/virtqemud
  elif [[ -x /usr/sbin/libvirtd ]]; then echo /usr/sbin/libvirtd
  else return 1
  fi
}
daemon_name() { basename "$(daemon_bin)"; }
sock_name() {
  case "$(daemon_name)" in
    virtqemud) echo virtqemud-sock ;;
    *) echo libvirt-sock ;;
  esac
}
host_sock() {
  local name
  name="$(sock_name 2>/dev/null || echo libvirt-sock)"
  printf '%s/libvirt/%s' "$(host_runtime "$1")" "$name"
}
host_pidfile() {
  local name
  name="$(daemon_name 2>/dev/null || echo libvirtd)"
  printf '%s/libvirt/%s.pid' "$(host_runtime "$1")" "$name"
}
host_uri() { printf 'qemu:///session?socket=%s' "$(host_sock "$1")"; }

virsh_h() { # virsh_h <host> args... (bounded so a wedged daemon cannot hang the script)
  local h="$1"
  shift
  timeout 60 virsh -q -c "$(host_uri "$h")" "$@"
}

host_answers() { timeout 10 virsh -q -c "$(host_uri "$1")" list --all >/dev/null 2>&1; }

# ---------------------------------------------------------------- packages

# command -> Debian package providing it
declare -A PKG_FOR=(
  [virsh]=libvirt-clients
  [qemu-system-x86_64]=qemu-system-x86
  [qemu-img]=qemu-utils
  [gcc]=gcc
  [cpio]=cpio
  [gzip]=gzip
  [runuser]=util-linux
  [ss]=iproute2
  [sha256sum]=coreutils
  [ps]=procps
  [useradd]=passwd
  [xz]=xz-utils
  [readelf]=binutils
  [flock]=util-linux
  [etcd]=etcd-server        # coordination for the HA agents and managers (lab/etcd.ts)
  [virtlockd]=libvirt-daemon # libvirt's lock manager, the barrier against a second copy (PVLAB_LOCK_MANAGER=lockd)
)

ensure_packages() {
  local missing=() c
  for c in "${!PKG_FOR[@]}"; do
    command -v "$c" >/dev/null 2>&1 || missing+=("${PKG_FOR[$c]}")
  done
  daemon_bin >/dev/null 2>&1 || missing+=(libvirt-daemon-system libvirt-daemon-driver-qemu)
  # The qemu driver is a separate package; without it the daemon has no qemu:// driver.
  if daemon_bin >/dev/null 2>&1 && ! ls /usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so >/dev/null 2>&1 \
     && ! ls /usr/lib*/libvirt/connection-driver/libvirt_driver_qemu.so >/dev/null 2>&1; then
    missing+=(libvirt-daemon-driver-qemu)
  fi
  [[ -f /usr/lib/x86_64-linux-gnu/libc.a || -f /usr/lib/libc.a || -f /usr/lib64/libc.a ]] || missing+=(libc6-dev)
  static_busybox >/dev/null 2>&1 || missing+=(busybox-static)
  compgen -G '/boot/vmlinuz-*' >/dev/null || missing+=(linux-image-amd64)
  ((${#missing[@]} == 0)) && return 0

  # de-duplicate
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "missing packages: ${missing[*]}"
  command -v apt-get >/dev/null 2>&1 || die "apt-get is not available, cannot install: ${missing[*]}" \
    "install them with your distribution's package manager (libvirt daemon + qemu driver, qemu-system-x86, qemu-utils, a kernel image in /boot, busybox-static, gcc + static libc, cpio), then re-run 'npm run lab -- up'"
  log "apt-get update"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || die "apt-get update failed" \
    "check the apt sources and the package mirror (see the output above), then re-run 'npm run lab -- up'"
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 || die \
    "apt-get install ${missing[*]} failed" "see the apt output above; fix it (e.g. 'dpkg --configure -a', free disk space) and re-run 'npm run lab -- up'"
  for c in "${!PKG_FOR[@]}"; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' is still missing after installing ${PKG_FOR[$c]}" "install it by hand"
  done
  daemon_bin >/dev/null 2>&1 || die "no libvirt daemon (virtqemud or libvirtd) after the install" "install libvirt-daemon-system by hand"
}

# A statically linked busybox (busybox-static ships /bin/busybox; the dynamic 'busybox' package conflicts).
static_busybox() {
  local b
  for b in /bin/busybox /usr/bin/busybox; do
    if [[ -x "$b" ]] && ! ldd "$b" >/dev/null 2>&1; then
      echo "$b"
      return 0
    fi
  done
  return 1
}

newest_kernel() {
  local k
  k="$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n1)"
  [[ -n "$k" ]] || return 1
  echo "$k"
}

# ---------------------------------------------------------------- guest build

# The init script of the initramfs (part of the guest's inputs hash).
guest_init() {
  cat <<'EOF'
#!/bin/sh
# pvlab guest init: mount the pseudo filesystems and run the load program on the console.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
/bin/pvguest
echo "PVEXIT status=$?"
poweroff -f
EOF
}

guest_inputs_hash() {
  local kernel="$1" busybox="$2"
  {
    echo "version=$GUEST_BUILD_VERSION"
    sha256sum "$GUEST_SRC" "$kernel" "$busybox" | awk '{print $1}'
    echo "kernel=$kernel"
    guest_init
    gcc --version | head -n1
  } | sha256sum | awk '{print $1}'
}

# Extract the uncompressed vmlinux (ELF) from a bzImage, like the kernel's scripts/extract-vmlinux.
# QEMU boots it directly through its PVH entry point (CONFIG_PVH=y in Debian's kernel): this skips
# the firmware's real-mode path and the XZ decompression, which cost ~3 s under TCG.
extract_pvh_vmlinux() {
  local bz="$1" out="$2" magic tool off
  for magic in $'\xfd7zXZ:xz -dc' $'\x28\xb5\x2f\xfd:zstd -dcq' $'\x1f\x8b\x08:gzip -dc'; do
    tool="${magic#*:}"
    command -v "${tool%% *}" >/dev/null 2>&1 || continue
    for off in $(grep -abo "${magic%%:*}" "$bz" 2>/dev/null | cut -d: -f1 | head -n 5); do
      tail -c +$((off + 1)) "$bz" | $tool >"$out" 2>/dev/null || true
      # An ELF with the XEN_ELFNOTE_PHYS32_ENTRY note (type 0x12) is PVH-bootable.
      if [[ "$(head -c 4 "$out" 2>/dev/null)" == $'\x7fELF' ]] && [[ "$(readelf -n "$out" 2>/dev/null)" == *"(0x00000012)"* ]]; then
        return 0
      fi
    done
  done
  rm -f "$out"
  return 1
}

build_guest() {
  local kernel busybox hash t0
  kernel="$(newest_kernel)" || die "no kernel image in /boot" "apt-get install linux-image-amd64"
  busybox="$(static_busybox)" || die "no statically linked busybox" "apt-get install busybox-static"
  [[ -f "$GUEST_SRC" ]] || die "guest source $GUEST_SRC is missing" "restore lab/guest/pvguest.c from git"
  hash="$(guest_inputs_hash "$kernel" "$busybox")"
  if [[ -f "$GUEST_DIR/inputs.sha256" && "$(cat "$GUEST_DIR/inputs.sha256")" == "$hash" \
        && -s "$GUEST_DIR/vmlinuz" && -s "$GUEST_DIR/initrd.gz" ]]; then
    log "guest: cached ($GUEST_DIR, inputs ${hash:0:12})"
    chmod 0755 "$GUEST_DIR"
    chmod 0644 "$GUEST_DIR"/*
    return 0
  fi
  t0=$(now_ms)
  log "guest: building (kernel $kernel, busybox $busybox)"
  local tmp="$LAB/guest.build.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp/root"/{bin,sbin,proc,sys,dev,tmp,etc}
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  gcc -static -O2 -Wall -o "$tmp/root/bin/pvguest" "$GUEST_SRC" >&2 || die "compiling $GUEST_SRC failed" \
    "see the compiler output above; static linking needs libc6-dev (libc.a)"
  strip "$tmp/root/bin/pvguest" 2>/dev/null || true
  cp "$busybox" "$tmp/root/bin/busybox"
  local app
  for app in sh mount umount poweroff reboot sleep echo cat ls dmesg; do
    ln -s busybox "$tmp/root/bin/$app"
  done
  guest_init >"$tmp/root/init"
  chmod 0755 "$tmp/root/init" "$tmp/root/bin/pvguest"
  # /dev/console must exist before devtmpfs is mounted, or init starts without a console.
  mknod -m 0600 "$tmp/root/dev/console" c 5 1 || die "mknod /dev/console in the initramfs failed" "run lab.sh as root"
  mknod -m 0666 "$tmp/root/dev/null" c 1 3 || true
  # Reproducible archive: fixed mtimes, sorted names, no gzip timestamp.
  find "$tmp/root" -exec touch -h -d @0 {} +
  (cd "$tmp/root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --reproducible --quiet) | gzip -9 -n >"$tmp/initrd.gz" \
    || die "building the initramfs (cpio | gzip) failed" "check that cpio and gzip work"
  cp "$kernel" "$tmp/vmlinuz"
  if extract_pvh_vmlinux "$kernel" "$tmp/vmlinux"; then
    log "guest: extracted a PVH-bootable vmlinux ($(du -h "$tmp/vmlinux" | cut -f1)); state.json guest.kernel uses it"
  else
    warn "guest: could not extract a PVH-bootable vmlinux from $kernel; booting the bzImage (slower under TCG)"
  fi
  echo "$hash" >"$tmp/inputs.sha256"
  rm -rf "$tmp/root"
  chmod 0644 "$tmp"/*
  # Replace file by file with rename(2): guests of other users of the lab that boot or restore
  # right now always find a complete kernel and initramfs.
  mkdir -p "$GUEST_DIR"
  chmod 0755 "$GUEST_DIR"
  local f
  for f in vmlinuz vmlinux initrd.gz; do
    if [[ -f "$tmp/$f" ]]; then mv -f "$tmp/$f" "$GUEST_DIR/$f"; else rm -f "$GUEST_DIR/$f"; fi
  done
  mv -f "$tmp/inputs.sha256" "$GUEST_DIR/inputs.sha256" # last: marks the cache complete
  rm -rf "$tmp"
  trap - EXIT
  log "guest: built in $(( $(now_ms) - t0 )) ms ($(du -h "$GUEST_DIR/initrd.gz" | cut -f1) initramfs)"
}

guest_kernel() { # what state.json's guest.kernel points at
  if [[ -s "$GUEST_DIR/vmlinux" ]]; then echo "$GUEST_DIR/vmlinux"; else echo "$GUEST_DIR/vmlinuz"; fi
}

# ---------------------------------------------------------------- users and directories

ensure_users() {
  getent group "$SHARED_GROUP" >/dev/null || groupadd --system "$SHARED_GROUP" \
    || die "groupadd $SHARED_GROUP failed" "run lab.sh as root"
  local h u
  for h in "${HOSTS[@]}"; do
    u="$(host_user "$h")"
    if ! id "$u" >/dev/null 2>&1; then
      log "creating user $u"
      useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
        --comment "protected-vm lab host $h" "$u" || die "useradd $u failed" "create the user by hand or run lab.sh as root"
    fi
    [[ " $(id -nG "$u") " == *" $SHARED_GROUP "* ]] || usermod -a -G "$SHARED_GROUP" "$u"
  done
}

# The daemon users must be able to reach .lab/: every ancestor directory needs o+x.
ensure_traversable() {
  local u p
  u="$(host_user a)"
  if runuser -u "$u" -- test -x "$LAB" 2>/dev/null; then return 0; fi
  p="$LAB"
  local fixes=()
  while [[ "$p" != "/" ]]; do
    p="$(dirname "$p")"
    if ! runuser -u "$u" -- test -x "$p" 2>/dev/null; then fixes+=("$p"); fi
  done
  local d
  for d in "${fixes[@]}"; do
    log "NOTE: chmod o+x $d (the lab's daemon users must traverse it to reach $LAB)"
    chmod o+x "$d" || die "chmod o+x $d failed" "make $LAB reachable by other users, or move the repo"
  done
  runuser -u "$u" -- test -x "$LAB" || die "$LAB is still not reachable by $u" \
    "check the permissions of every parent directory (ACLs, mount options such as a root-only home)"
}

# Directories of one host, owned by its user.
prepare_host_dirs() {
  local h="$1" u hd rt
  u="$(host_user "$h")"
  hd="$(host_dir "$h")"
  rt="$(host_runtime "$h")"
  if [[ "$hd" != "$LAB/$h" ]]; then
    install -d -m 0755 "$(dirname "$hd")"
    log "NOTE: host $h keeps its daemon state in $hd ($LAB/$h is too long a prefix for QEMU's unix sockets)"
  fi
  install -d -m 0755 -o "$u" -g "$u" "$LAB/$h" "$(host_storage "$h")" \
    "$hd" "$hd/config" "$hd/config/libvirt" "$hd/cache" "$hd/data" "$hd/home" "$hd/log"
  install -d -m 0700 -o "$u" -g "$u" "$rt"
  # Daemon config: log to a file (no journald/syslog for a session daemon started by a script).
  # The qemu driver writes console logs itself (stdio_handler=file) so no virtlogd is spawned.
  local conf
  conf="$hd/config/libvirt/$(daemon_name).conf"
  printf 'log_outputs="3:file:%s"\n' "$hd/log/daemon.log" >"$conf"
  printf 'stdio_handler = "file"\n' >"$hd/config/libvirt/qemu.conf"
  chown "$u:$u" "$conf" "$hd/config/libvirt/qemu.conf"
  # PVLAB_LOCK_MANAGER=lockd: libvirt's lock manager as the storage-level barrier (issue 12).
  # Each session daemon spawns its own virtlockd; every disk is locked through a file named by
  # the disk path's hash in a lockspace on the shared repository, so two hosts' QEMUs of one
  # disk exclude each other (fcntl locks hold across processes and users).
  if [[ "${PVLAB_LOCK_MANAGER:-}" == lockd ]]; then
    install -d -m 1777 -g "$SHARED_GROUP" "$REPO_DIR/lockspace"
    printf 'lock_manager = "lockd"\n' >>"$hd/config/libvirt/qemu.conf"
    printf 'auto_disk_leases = 1\nfile_lockspace_dir = "%s"\n' "$REPO_DIR/lockspace" >"$hd/config/libvirt/qemu-lockd.conf"
    chown "$u:$u" "$hd/config/libvirt/qemu-lockd.conf"
  else
    rm -f "$hd/config/libvirt/qemu-lockd.conf"
  fi
}

# ---------------------------------------------------------------- daemons

# True when pid runs. A killed process can linger as a zombie until PID 1 reaps it (slow in some
# containers): that does not count.
alive() { kill -0 "$1" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != "Z" ]]; }

# Live (non-zombie) pids of a user.
user_pids() { ps -u "$1" -o pid=,stat= 2>/dev/null | awk '$2 !~ /^Z/ {print $1}'; }

daemon_pid() { # pid of the host's daemon if it runs, else nothing
  local pf pid
  pf="$(host_pidfile "$1")"
  [[ -f "$pf" ]] || return 1
  pid="$(tr -dc '0-9' <"$pf")"
  [[ -n "$pid" ]] || return 1
  alive "$pid" || return 1
  [[ "$(stat -c %U "/proc/$pid" 2>/dev/null)" == "$(host_user "$1")" ]] || return 1
  echo "$pid"
}

log_tail() { # last lines of a host's daemon output, for error messages
  local hd f
  hd="$(host_dir "$1")"
  for f in "$hd/log/daemon.stdout" "$hd/log/daemon.log"; do
    [[ -s "$f" ]] || continue
    printf '[lab] --- last lines of %s:\n' "$f" >&2
    tail -n 8 "$f" | sed 's/^/[lab]     /' >&2
  done
}

start_daemon() {
  local h="$1" u hd rt sock pid bin
  u="$(host_user "$h")"
  hd="$(host_dir "$h")"
  rt="$(host_runtime "$h")"
  sock="$(host_sock "$h")"
  bin="$(daemon_bin)"

  if pid="$(daemon_pid "$h")"; then
    if host_answers "$h"; then
      log "host $h: daemon already running (pid $pid)"
      return 0
    fi
    warn "host $h: daemon pid $pid does not answer on $sock; restarting it"
    stop_daemon "$h"
  fi
  if [[ -S "$sock" ]]; then
    # Socket exists but not our daemon: someone else listens there, or it is stale.
    local holder
    holder="$(ss -xlpn 2>/dev/null | grep -F " $sock " | grep -o 'pid=[0-9]*' | head -n1 || true)"
    if [[ -n "$holder" ]]; then
      die "socket $sock is in use by another process ($holder) not started by lab.sh" \
        "stop that process (or run 'npm run lab -- down'), then re-run 'npm run lab -- up'"
    fi
    rm -f "$sock" "${sock%-sock}-sock-ro" "${sock%-sock}-admin-sock"
  fi

  log "host $h: starting $(basename "$bin") as $u"
  # -d: fork into the background once initialised (the parent waits for the child's status).
  # No --timeout: a daemon started by hand (not auto-spawned by a client) never exits when idle.
  if ! runuser -u "$u" -- env -i \
      HOME="$hd/home" USER="$u" LOGNAME="$u" PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C \
      XDG_RUNTIME_DIR="$rt" XDG_CONFIG_HOME="$hd/config" XDG_CACHE_HOME="$hd/cache" XDG_DATA_HOME="$hd/data" \
      "$bin" -d >"$hd/log/daemon.stdout" 2>&1 9<&-; then # 9<&-: the daemon must not inherit the lab lock
    log_tail "$h"
    die "host $h: $(basename "$bin") failed to start" \
      "see $hd/log/daemon.stdout and $hd/log/daemon.log (last lines above)" \
      "'npm run lab -- down' then 'npm run lab -- up' starts from scratch"
  fi
  local i
  for ((i = 0; i < 150; i++)); do
    if [[ -S "$sock" ]] && host_answers "$h"; then
      log "host $h: up ($(host_uri "$h"))"
      return 0
    fi
    sleep 0.2
  done
  log_tail "$h"
  die "host $h: the daemon started but $(host_uri "$h") does not answer after 30 s" \
    "see $hd/log/daemon.log and $hd/log/daemon.stdout" "try: virsh -c '$(host_uri "$h")' list --all"
}

stop_daemon() {
  local h="$1" pid i
  pid="$(daemon_pid "$h")" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    alive "$pid" || return 0
    sleep 0.05
  done
  warn "host $h: daemon pid $pid ignored SIGTERM for 10 s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

# Live pids of the host's user that belong to THIS lab (another checkout may run its own lab with
# the same users): the daemon has XDG_*=<lab>/<host>/... in its environment, and its QEMU
# processes inherit per-domain dirs under <lab>/<host>/config.
host_pids() {
  local h="$1" u hd pid
  u="$(host_user "$h")"
  hd="$(host_dir "$h")"
  id "$u" >/dev/null 2>&1 || return 0
  for pid in $(user_pids "$u"); do
    if grep -qsaF -e "$hd/" -e "$(host_runtime "$h")" "/proc/$pid/cmdline" "/proc/$pid/environ"; then echo "$pid"; fi
  done
}

# Kill whatever of this lab still runs as the host's user (qemu, helpers).
kill_host_processes() {
  local h="$1" pids i
  pids="$(host_pids "$h")"
  [[ -z "$pids" ]] && return 0
  log "host $h: killing leftover processes of $(host_user "$h"): $(echo $pids)"
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    pids="$(host_pids "$h")"
    [[ -z "$pids" ]] && return 0
    sleep 0.05
  done
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  sleep 0.2
}

pool_running() { # (no "virsh | grep -q": with pipefail, grep's early exit SIGPIPEs virsh into failure)
  local info
  info="$(virsh_h "$1" pool-info "$POOL" 2>/dev/null)" || return 1
  grep -Eq '^State:[[:space:]]+running' <<<"$info"
}

ensure_pool() {
  local h="$1" dir
  dir="$(host_storage "$h")"
  if ! virsh_h "$h" pool-info "$POOL" >/dev/null 2>&1; then
    virsh_h "$h" pool-define-as "$POOL" dir --target "$dir" >/dev/null \
      || die "host $h: defining storage pool $POOL failed" "see $(host_dir "$h")/log/daemon.log"
  fi
  local target
  # libvirt evaluates the XPath on its own parsed XML (no text matching on XML here).
  target="$(virsh_h "$h" pool-dumpxml "$POOL" --xpath '/pool/target/path/text()' | head -n1)"
  if [[ "$target" != "$dir" ]]; then
    die "host $h: pool $POOL points at '$target', expected '$dir'" "run 'npm run lab -- down' then 'up'"
  fi
  if ! pool_running "$h"; then
    # A restarted daemon autostarts the pool in the background: "already active" is fine.
    virsh_h "$h" pool-start "$POOL" >/dev/null 2>&1 || pool_running "$h" \
      || die "host $h: starting pool $POOL failed" "try: virsh -c '$(host_uri "$h")' pool-start $POOL" "see $(host_dir "$h")/log/daemon.log"
  fi
  virsh_h "$h" pool-autostart "$POOL" >/dev/null 2>&1 || true
}

json_str() { # minimal JSON string escaping for paths and URIs
  local s="$1"
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  printf '"%s"' "$s"
}

write_state() {
  local tmp="$STATE.tmp.$$" h u first=1
  {
    printf '{\n  "hosts": {\n'
    for h in "${HOSTS[@]}"; do
      u="$(host_user "$h")"
      ((first)) || printf ',\n'
      first=0
      printf '    "%s": {"name": "%s", "uri": %s, "storageDir": %s, "pool": "%s", "user": "%s", "uid": %s, "gid": %s, "daemonLog": %s}' \
        "$h" "$h" "$(json_str "$(host_uri "$h")")" "$(json_str "$(host_storage "$h")")" "$POOL" "$u" "$(id -u "$u")" "$(id -g "$u")" \
        "$(json_str "$(host_dir "$h")/log/daemon.log")"
    done
    printf '\n  },\n'
    printf '  "repository": %s,\n' "$(json_str "$REPO_DIR")"
    printf '  "sharedGroup": "%s", "sharedGid": %s,\n' "$SHARED_GROUP" "$(getent group "$SHARED_GROUP" | cut -d: -f3)"
    printf '  "guest": {"kernel": %s, "initrd": %s, "bzImage": %s, "cmdline": "quiet console=ttyS0"}\n' \
      "$(json_str "$(guest_kernel)")" "$(json_str "$GUEST_DIR/initrd.gz")" "$(json_str "$GUEST_DIR/vmlinuz")"
    printf '}\n'
  } >"$tmp"
  chmod 0644 "$tmp"
  mv "$tmp" "$STATE"
}

# ---------------------------------------------------------------- commands

cmd_up() {
  local t0 h
  t0=$(now_ms)
  [[ "$(id -u)" == 0 ]] || die "lab.sh up must run as root (it creates users and starts daemons as them)" "run: sudo npm run lab -- up"
  ensure_packages
  mkdir -p "$LAB"
  chmod 0755 "$LAB"
  build_guest
  ensure_users
  ensure_traversable
  install -d -m 1777 -g "$SHARED_GROUP" "$REPO_DIR"
  chmod 1777 "$REPO_DIR"
  for h in "${HOSTS[@]}"; do
    prepare_host_dirs "$h"
    start_daemon "$h"
    ensure_pool "$h"
  done
  write_state
  log "lab up in $(( $(now_ms) - t0 )) ms; state in $STATE"
  for h in "${HOSTS[@]}"; do log "  host $h: $(host_uri "$h")"; done
}

cmd_down() {
  local purge=0 h name
  [[ "${1:-}" == "--purge" ]] && purge=1
  [[ "$(id -u)" == 0 ]] || die "lab.sh down must run as root" "run: sudo npm run lab -- down"
  for h in "${HOSTS[@]}"; do
    if daemon_pid "$h" >/dev/null && host_answers "$h"; then
      while read -r name; do
        [[ -z "$name" ]] && continue
        log "host $h: removing domain $name"
        virsh_h "$h" destroy "$name" >/dev/null 2>&1 || true
        virsh_h "$h" undefine "$name" --managed-save --snapshots-metadata --checkpoints-metadata >/dev/null 2>&1 \
          || virsh_h "$h" undefine "$name" >/dev/null 2>&1 || true
      done < <(virsh_h "$h" list --all --name 2>/dev/null || true)
    fi
    stop_daemon "$h"
    kill_host_processes "$h"
    rm -rf "$(host_dir "$h")" "${LAB:?}/$h"
  done
  rmdir "$(short_base)" 2>/dev/null || true
  rm -rf "$REPO_DIR" "$STATE" "$LAB"/guest.build.*
  if ((purge)); then
    rm -rf "$GUEST_DIR"
    rmdir "$LAB" 2>/dev/null || true
  fi
  log "lab down$( ((purge)) && echo ' (guest cache purged)' || echo " (guest cache kept in $GUEST_DIR)")"
}

cmd_status() {
  local ok=0 h out
  command -v virsh >/dev/null 2>&1 || { log "virsh is not installed: lab is down"; return 1; }
  for h in "${HOSTS[@]}"; do
    if out="$(timeout 10 virsh -c "$(host_uri "$h")" list --all 2>&1)"; then
      printf 'host %s: UP   %s (pid %s)\n' "$h" "$(host_uri "$h")" "$(daemon_pid "$h" || echo '?')"
      printf '%s\n' "$out" | sed 's/^/    /'
    else
      printf 'host %s: DOWN %s\n    %s\n' "$h" "$(host_uri "$h")" "$(printf '%s' "$out" | head -n1)"
      ok=1
    fi
  done
  if [[ ! -f "$STATE" ]]; then
    printf 'state: %s missing\n' "$STATE"
    ok=1
  else
    printf 'state: %s\n' "$STATE"
  fi
  return "$ok"
}

# up and down change shared state: run one at a time (tests in parallel jest processes, other
# engineers). The lock is flock(2) on the lab/ directory itself, so it leaves no file behind.
# Long-lived children (the daemons) are started with the lock fd closed.
LOCK_TARGET="$ROOT/lab"
lock_holders() {
  local fd pid out=()
  for fd in /proc/[0-9]*/fd/*; do
    [[ "$(readlink "$fd" 2>/dev/null)" == "$LOCK_TARGET" ]] || continue
    pid="${fd#/proc/}"
    pid="${pid%%/*}"
    [[ "$pid" == "$$" || "$pid" == "$BASHPID" ]] && continue
    out+=("$pid($(cat "/proc/$pid/comm" 2>/dev/null))")
  done
  printf '%s ' "${out[@]}" | sort -u
}
lock_lab() {
  command -v flock >/dev/null 2>&1 || return 0
  exec 9<"$LOCK_TARGET"
  if ! flock -n 9; then
    log "another lab.sh up/down is running; waiting for it (up to 10 min; holders: $(lock_holders))"
    flock -w 600 9 || die "timed out waiting for the lab lock (flock on $LOCK_TARGET)" \
      "processes holding it: $(lock_holders)" "if one of them is not a running lab.sh, stop it"
  fi
}

case "${1:-}" in
  up) lock_lab; cmd_up ;;
  down) shift; lock_lab; cmd_down "$@" ;;
  status) cmd_status ;;
  # The pids of this checkout's lab processes of host $2 (daemon, QEMU, helpers), one a line:
  # failing a host kills exactly these, never another checkout's lab that shares the users.
  pids) [[ "${2:-}" == a || "${2:-}" == b ]] || usage; host_pids "$2" ;;
  *) usage ;;
esac
