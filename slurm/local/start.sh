#!/usr/bin/env bash
# Start a single-node Slurm (munged, slurmctld, slurmd) from Debian's slurm-wlm for tests and demos.
#
# Idempotent: daemons that already run are kept; the config is re-rendered and daemons restarted only
# when it changed. Needs root and the packages installed by .ci/slurm-setup.sh.
# State, logs and pidfiles live in $HPCQ_SLURM_DIR (default /var/tmp/hpcq-slurm).
# The config goes to Slurm's default path, /etc/slurm/slurm.conf: with only SLURM_CONF exported, an srun
# inside a batch job cannot find its configuration.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
state_dir="${HPCQ_SLURM_DIR:-/var/tmp/hpcq-slurm}"
conf=/etc/slurm/slurm.conf
mpi_conf=/etc/slurm/mpi.conf
marker="# hpcq-local-slurm"
host="$(hostname -s)"

die() { echo "slurm/local/start.sh: $*" >&2; exit 1; }
alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

[[ $EUID -eq 0 ]] || die "must run as root (it starts munged, slurmctld and slurmd)"
for bin in munged slurmctld slurmd sinfo; do
    command -v "$bin" >/dev/null || die "$bin not found; install Slurm first: .ci/slurm-setup.sh"
done

# slurmctld and slurmd find each other by the short hostname.
if ! getent hosts "$host" >/dev/null; then
    echo "127.0.0.1 $host" >>/etc/hosts
fi

# munge: the package's postinst creates the key; a bare image may lack it.
if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
fi
mkdir -p /run/munge "$state_dir/state" "$state_dir/spool" && chown munge:munge /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    # stop.sh stops munged only when this script started it.
    touch "$state_dir/started-munged"
fi
munge -n | unmunge >/dev/null || die "munge does not work; see /var/log/munge/munged.log"

# Node line from the hardware; declare 3/4 of the memory so that the host keeps headroom.
node_line="$(slurmd -C | head -n1)"
memory_mb="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")"
node_line="$(sed "s/RealMemory=[0-9]*/RealMemory=$((memory_mb * 3 / 4))/" <<<"$node_line") NodeAddr=127.0.0.1 State=UNKNOWN"

rendered="$(sed -e "s|@HOST@|$host|g" -e "s|@STATE_DIR@|$state_dir|g" -e "s|@NODE_LINE@|$node_line|" \
    "$here/slurm.conf.template")"
for file in "$conf" "$mpi_conf"; do
    if [[ -e $file ]] && ! head -n1 "$file" | grep -qx "$marker.*"; then
        die "$file exists and was not written by this script; move it away to use the test cluster"
    fi
done
if [[ ! -e $conf ]] || [[ "$(cat "$conf")" != "$rendered" ]] || ! cmp -s "$here/mpi.conf" "$mpi_conf"; then
    mkdir -p "$(dirname "$conf")"
    printf '%s\n' "$rendered" >"$conf"
    cp "$here/mpi.conf" "$mpi_conf"
    # A changed config needs fresh daemons.
    for daemon in slurmd slurmctld; do
        if alive "$state_dir/$daemon.pid"; then
            kill "$(cat "$state_dir/$daemon.pid")"
            for _ in $(seq 50); do alive "$state_dir/$daemon.pid" || break; sleep 0.1; done
        fi
    done
fi

alive "$state_dir/slurmctld.pid" || slurmctld
alive "$state_dir/slurmd.pid" || slurmd

state=""
for _ in $(seq 60); do
    state="$(sinfo -h -n "$host" -o %t 2>/dev/null || true)"
    case "$state" in
        idle | mix | alloc) break ;;
        down* | drain* | drng*) scontrol update NodeName="$host" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 1
done
case "$state" in
    idle | mix | alloc) ;;
    *) die "node $host is '${state:-unknown}' after 60 s; see $state_dir/slurmctld.log and slurmd.log" ;;
esac
echo "slurm/local: node $host is $state (config $conf, state and logs in $state_dir)"
