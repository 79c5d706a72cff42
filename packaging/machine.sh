# Sourced by packaging/check: boots a Debian root with systemd as PID 1 (systemd-nspawn
# --boot) and runs commands inside it. Needs `fail` from the caller.
#
# What it touches, and how all of it goes away again:
# - --private-network: the container has a network namespace of its own with only a
#   loopback. Its sshd listens there and the ssh client runs there; no test traffic
#   reaches the host's network, and the host's own sshd and ports are never involved.
# - nspawn runs in a private mount namespace with a tmpfs on /run, so its lock and
#   propagation directories (/run/systemd/nspawn) never appear in the host's /run, and
#   every mount it makes ends with it.
# - --register=no --keep-unit: no systemd-machined and no transient scope, so the host
#   need not run systemd. nspawn and the container live instead in cgroups of our own
#   (one per hierarchy nspawn uses, below the caller's), which machine_cleanup empties
#   (SIGKILL) and removes.
# - machine_stop: SIGTERM makes nspawn ask the container's systemd for an orderly
#   shutdown; whatever is left after 60 s is killed.

MACHINE_PID="" MACHINE_LEADER="" MACHINE_LOG=""
MACHINE_CGROUPS=()

# Our cgroup in every hierarchy systemd-nspawn and the container's systemd use: the
# unified (v2) one and, on a hybrid host, the named v1 "systemd" one.
machine_cgroups_create() {
  local name=pam-toopher-check.$$ v2="" v1="" path
  if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
    v2=/sys/fs/cgroup
  else
    if [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then v2=/sys/fs/cgroup/unified; fi
    if [ "$(stat -fc %T /sys/fs/cgroup/systemd 2>/dev/null)" = cgroupfs ]; then v1=/sys/fs/cgroup/systemd; fi
  fi
  [ -n "$v2" ] || fail "no cgroup v2 hierarchy (/sys/fs/cgroup or /sys/fs/cgroup/unified): systemd 252 in a container needs one"
  path=$(sed -n 's/^0:://p' /proc/self/cgroup)
  mkdir "$v2${path%/}/$name" || fail "cannot create the cgroup $v2${path%/}/$name"
  MACHINE_CGROUPS+=("$v2${path%/}/$name")
  if [ -n "$v1" ]; then
    path=$(sed -n 's/^[0-9]*:name=systemd://p' /proc/self/cgroup)
    mkdir "$v1${path%/}/$name" || fail "cannot create the cgroup $v1${path%/}/$name"
    MACHINE_CGROUPS+=("$v1${path%/}/$name")
  fi
}

# Whether a process exists and is not a zombie (nspawn is our child until it is reaped).
machine_alive() {
  local s
  s=$(ps -o stat= -p "$1" 2>/dev/null) && [ -n "$s" ] && [ "${s#Z}" = "$s" ]
}

# Boots the root ($1), console output to $2; returns once systemd reports "running".
machine_start() {
  local root=$1 state="" pid i
  MACHINE_LOG=$2
  [ ${#MACHINE_CGROUPS[@]} -gt 0 ] || machine_cgroups_create
  (
    for cg in "${MACHINE_CGROUPS[@]}"; do echo "$BASHPID" > "$cg/cgroup.procs"; done
    # unshare and sh exec: this pid becomes systemd-nspawn's.
    exec unshare --mount --propagation private -- sh -c \
      'mount -t tmpfs -o mode=0755,size=16m pam-toopher-check-run /run && exec "$@"' sh \
      systemd-nspawn --quiet --boot --register=no --keep-unit --private-network \
      --link-journal=no --machine=pam-toopher-check --directory="$root"
  ) < /dev/null > "$MACHINE_LOG" 2>&1 &
  MACHINE_PID=$!
  MACHINE_LEADER=""
  for i in $(seq 600); do
    machine_alive "$MACHINE_PID" \
      || fail "systemd-nspawn exited while booting the container; its output:
$(tail -n 40 "$MACHINE_LOG")"
    if [ -z "$MACHINE_LEADER" ]; then
      # The container's PID 1 as the host sees it: nspawn's child, once it is systemd.
      for pid in $(ps -o pid= --ppid "$MACHINE_PID" || true); do
        if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd ]; then MACHINE_LEADER=$pid; fi
      done
    fi
    if [ -n "$MACHINE_LEADER" ]; then
      state=$(in_machine systemctl is-system-running 2>/dev/null || true)
      case $state in
        running) return 0 ;;
        degraded) fail "the container booted degraded: $(in_machine systemctl --failed --no-pager --no-legend 2>&1)" ;;
      esac
    fi
    if [ $((i % 50)) -eq 0 ]; then echo "  ... waiting for the container's systemd (${state:-not started})" >&2; fi
    sleep 0.2
  done
  fail "the container's systemd did not reach \"running\" in 120 s (it says: ${state:-nothing}); console:
$(tail -n 40 "$MACHINE_LOG")"
}

# Runs a command inside the booted container (all its namespaces and its root), with a
# clean environment; VAR=value arguments before the command are passed on.
in_machine() {
  [ -n "$MACHINE_LEADER" ] || fail "in_machine: the container is not running"
  nsenter --target "$MACHINE_LEADER" --all --root --wd -- /usr/bin/env -i \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}

# Orderly shutdown: SIGTERM to nspawn (it sends SIGRTMIN+3 to the container's systemd).
# Returns nspawn's exit status; 0 means the container shut down cleanly.
machine_stop() {
  local rc=0 i
  [ -n "$MACHINE_PID" ] || return 0
  kill -TERM "$MACHINE_PID" 2>/dev/null || true
  for i in $(seq 600); do machine_alive "$MACHINE_PID" || break; sleep 0.1; done
  if machine_alive "$MACHINE_PID"; then
    echo "packaging/check: the container did not shut down in 60 s; killing it" >&2
    kill -KILL "$MACHINE_PID" 2>/dev/null || true
    rc=124
  fi
  wait "$MACHINE_PID" || rc=$?
  MACHINE_PID="" MACHINE_LEADER=""
  return $rc
}

# For the EXIT trap: stops the container if it runs, kills whatever is left in our
# cgroups, removes them. Returns non-zero (and says so) if anything could not be removed.
machine_cleanup() {
  local cg procs left=0 i
  [ -z "$MACHINE_PID" ] || machine_stop || true
  for cg in "${MACHINE_CGROUPS[@]}"; do
    [ -d "$cg" ] || continue
    for i in $(seq 50); do
      procs=$(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null)
      [ -z "$procs" ] && break
      # shellcheck disable=SC2086
      kill -KILL $procs 2>/dev/null || true
      sleep 0.1
    done
    find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
    if [ -d "$cg" ]; then
      echo "packaging/check: could not remove the cgroup $cg" >&2
      left=1
    fi
  done
  MACHINE_CGROUPS=()
  return $left
}
