#!/usr/bin/env bash
# Stop the single-node test cluster started by start.sh: slurmd, slurmctld and the munged it started,
# each by the pid in its pidfile; then remove the config it wrote. Idempotent.
set -euo pipefail

state_dir="${HPCQ_SLURM_DIR:-/var/tmp/hpcq-slurm}"
marker="# hpcq-local-slurm"

stop_pidfile() {
    local pidfile=$1
    [[ -s $pidfile ]] || return 0
    local pid
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
}

stop_pidfile "$state_dir/slurmd.pid"
stop_pidfile "$state_dir/slurmctld.pid"
if [[ -e $state_dir/started-munged ]]; then
    stop_pidfile /run/munge/munged.pid
    rm -f "$state_dir/started-munged"
fi
for file in /etc/slurm/slurm.conf /etc/slurm/mpi.conf; do
    if [[ -e $file ]] && head -n1 "$file" | grep -qx "$marker.*"; then
        rm -f "$file"
    fi
done
echo "slurm/local: stopped"
