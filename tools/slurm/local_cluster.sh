#!/bin/bash
# A one-node Slurm cluster on this machine (slurmctld + slurmd on localhost, its own munged), to
# run tools/slurm/*.sbatch for real: the tests do (tests/study/test_slurm.py), and so can you.
#
#   tools/slurm/local_cluster.sh up DIR       # write DIR/slurm.conf, start the daemons, wait until the node is idle
#   export SLURM_CONF=DIR/slurm.conf           # sbatch, srun, squeue, scancel ... now talk to it
#   sbatch --array=0-1 --gpus-per-node=0 --cpus-per-task=1 tools/slurm/study_array.sbatch --config ...
#   tools/slurm/local_cluster.sh status DIR
#   tools/slurm/local_cluster.sh down DIR     # cancel its jobs, stop the daemons `up` started (by pid)
#
# Installs nothing. Needs slurmctld, slurmd, munged and the client commands (Debian and Ubuntu:
# apt-get install slurm-wlm munge) and normally root: slurmd starts jobs as their user. As another
# user the daemons run as that user, which Slurm allows for jobs of that user only.
# DIR is made if absent and must not hold a running cluster; everything of the cluster is in it:
# slurm.conf, a fresh munge key and socket, state, spool, the daemons' logs and pids. The node has
# this host's CPUs (slurmd -C); no GPUs, no accounting, no cgroups. Ports: SLURMCTLD_PORT and
# SLURMD_PORT, free ones at random otherwise.
set -euo pipefail

usage() {
    echo "usage: $0 up|down|status DIR" >&2
    exit 2
}
[[ $# -eq 2 ]] || usage
action=$1
DIR=$(mkdir -p "$2" && cd "$2" && pwd)
CONF=$DIR/slurm.conf
PIDS=$DIR/pids
export SLURM_CONF=$CONF

ours() {  # ours PID: the process is a daemon started by `up` for this DIR (not a reused pid)
    [[ -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$DIR/"
}

alive() {  # alive PID: running, not a zombie
    kill -0 "$1" 2>/dev/null && [[ $(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) != Z ]]
}

free_port() {  # a port nothing listens on, at random in 20000-39999
    local port
    for _ in $(seq 50); do
        port=$((20000 + RANDOM % 20000))
        if ! (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    echo "error: no free port found" >&2
    exit 1
}

down() {
    [[ -f $PIDS ]] || { echo "no cluster started in $DIR"; return 0; }
    if [[ -f $CONF ]] && command -v squeue >/dev/null; then  # jobs first: slurmd leaves them running
        jobs=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            timeout 10 scancel $jobs 2>/dev/null || true
            for _ in $(seq 30); do
                [[ -z $(timeout 10 squeue -h -o %i 2>/dev/null || true) ]] && break
                sleep 0.5
            done
        fi
    fi
    tac "$PIDS" | while read -r name pid; do  # slurmd, slurmctld, then munged
        if ours "$pid"; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do
                ours "$pid" || break
                sleep 0.2
            done
            if ours "$pid"; then
                kill -9 "$pid" 2>/dev/null || true
            fi
            echo "stopped $name (pid $pid)"
        fi
    done
    rm -f "$PIDS"
}

status() {
    [[ -f $PIDS ]] || { echo "no cluster started in $DIR"; return 1; }
    local dead=0
    while read -r name pid; do
        if ours "$pid"; then echo "$name: pid $pid"; else echo "$name: not running (pid $pid)"; dead=1; fi
    done <"$PIDS"
    timeout 10 sinfo -N -o "%N %t %c" || dead=1
    timeout 10 squeue || dead=1
    return $dead
}

fail() {  # fail MESSAGE: say why, show the logs' ends, stop what was started
    echo "error: $1" >&2
    for log in "$DIR"/munged.log "$DIR"/slurmctld.log "$DIR"/slurmd.log; do
        [[ -f $log ]] && { echo "--- $log" >&2; tail -n 15 "$log" >&2; }
    done
    down >&2
    exit 1
}

start() {  # start NAME COMMAND...: run a daemon in the foreground mode, in the background; record its pid
    local name=$1
    shift
    setsid "$@" >>"$DIR/$name.out" 2>&1 </dev/null &
    echo "$name $!" >>"$PIDS"
}

up() {
    local missing=()
    for tool in slurmctld slurmd munged sbatch srun squeue sinfo scancel scontrol; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "error: ${missing[*]} not found: install Slurm and MUNGE (Debian/Ubuntu: apt-get install slurm-wlm munge)" >&2
        exit 3
    fi
    if [[ -f $PIDS ]]; then
        echo "error: $DIR already holds a cluster ($PIDS): '$0 down $DIR' first" >&2
        exit 2
    fi
    local host user cpus node
    host=$(hostname -s)
    user=$(id -un)
    node=$(slurmd -C | head -n 1)  # NodeName=<host> CPUs=... Boards=... RealMemory=...: this host as slurmd sees it
    [[ $node == NodeName=* ]] || fail "slurmd -C did not describe this host: $node"
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")
    mkdir -p "$DIR/munge" "$DIR/state" "$DIR/spool"
    chmod 700 "$DIR/munge"
    (umask 077 && head -c 1024 /dev/urandom >"$DIR/munge/munge.key")
    cat >"$CONF" <<EOF
# Written by tools/slurm/local_cluster.sh: a one-node cluster on $host, for trying the sbatch scripts.
ClusterName=repeatseg-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=${SLURMCTLD_PORT:-$(free_port)}
SlurmdPort=${SLURMD_PORT:-$(free_port)}
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=5
InactiveLimit=0
$node
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    start munged munged --foreground --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munged.log" --seed-file="$DIR/munge/munged.seed"
    for _ in $(seq 50); do [[ -S $DIR/munge/munge.socket ]] && break; sleep 0.1; done
    [[ -S $DIR/munge/munge.socket ]] || fail "munged did not start"
    start slurmctld slurmctld -D -f "$CONF"
    start slurmd slurmd -D -f "$CONF" -N "$host"
    for _ in $(seq 120); do
        while read -r name pid; do alive "$pid" || fail "$name exited (see $DIR/$name.log and $DIR/$name.out)"; done <"$PIDS"
        if [[ $(timeout 5 sinfo -h -N -o %t 2>/dev/null) == idle ]]; then
            echo "cluster up: node $host ($cpus CPUs), partition local; logs and state in $DIR"
            echo "export SLURM_CONF=$CONF"
            return 0
        fi
        sleep 0.5
    done
    fail "the node did not become idle within 60 s"
}

case $action in
    up) up ;;
    down) down ;;
    status) status ;;
    *) usage ;;
esac
