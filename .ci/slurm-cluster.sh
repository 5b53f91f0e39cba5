#!/usr/bin/env bash
# A single-node SLURM with accounting, for CI and for trying the SLURM profile:
#   .ci/slurm-cluster.sh start [DIR]   munged, mariadbd, slurmdbd, slurmctld, slurmd (as root)
#   .ci/slurm-cluster.sh stop  [DIR]   stops each of them by the PID it recorded
#   . DIR/env                          SLURM_CONF for sbatch, sacct, squeue
# Every file (configs, munge key, database, spool, logs, PIDs) lives under DIR
# (default /tmp/soften-slurm), except a link /etc/slurm/slurm.conf -> DIR/etc/slurm.conf
# while it runs (see below). Needs Debian's packages:
#   apt-get install -y slurm-wlm munge slurmdbd mariadb-server
# SLURM_CI_ACCOUNTING=0 starts no database and no slurmdbd: a cluster without
# accounting, where sacct fails (the route the README documents for such sites).
# Facts this relies on (SLURM 22.05): a GPU GRES without File= is dropped, and File=
# must name a character device (not /dev/nvidia*, which soften would take for a real
# GPU); SlurmdParameters=config_overrides lets a 2-core host advertise more CPUs, so
# that several 1-CPU jobs and a GPU job run at once as on a real node.
set -euo pipefail
cmd=${1:?usage: $0 start|stop [DIR]}
DIR=$(realpath -m "${2:-${SLURM_CI_DIR:-/tmp/soften-slurm}}")
ACCOUNTING=${SLURM_CI_ACCOUNTING:-1}
CPUS=${SLURM_CI_CPUS:-8}
GPUS=${SLURM_CI_GPUS:-4}
MIN_JOB_AGE=${SLURM_CI_MIN_JOB_AGE:-300}   # seconds a finished job stays visible to squeue/scontrol
BASE_PORT=${SLURM_CI_PORT:-26817}          # slurmctld; slurmd +1, slurmdbd +2, mariadbd +3
HOST=$(hostname -s)
PIDS=$DIR/pids

wait_for() {  # wait_for SECONDS WHAT COMMAND...: poll until COMMAND succeeds
    local t=$1 what=$2; shift 2
    local end=$((SECONDS + t))
    while [ $SECONDS -lt $end ]; do timeout 5 "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    echo "slurm-cluster: $what did not come up in ${t}s; logs in $DIR/log" >&2
    return 1
}

record() { echo "$2" > "$PIDS/$1.pid"; }

start_daemon() {  # start_daemon NAME PIDFILE COMMAND...: daemonizing command, PID from its pid file
    local name=$1 pidfile=$2; shift 2
    "$@"
    wait_for 20 "$name" test -s "$pidfile"
    record "$name" "$(cat "$pidfile")"
}

start() {
    if [ -d "$PIDS" ] && ls "$PIDS"/*.pid >/dev/null 2>&1; then
        echo "slurm-cluster: $DIR holds PIDs of a running cluster; run: $0 stop $DIR" >&2; exit 2
    fi
    rm -rf "$DIR"; mkdir -p "$DIR"/{pids,log,munge,spool/ctld,spool/d,mysql,etc}
    chmod 700 "$DIR/munge"
    local etc=$DIR/etc sock=$DIR/munge/munge.socket.2

    # munge: the key and socket are this cluster's own; slurm.conf points at the socket.
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
    munged --force --key-file="$DIR/munge/munge.key" --socket="$sock" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/seed"
    wait_for 20 munged test -s "$DIR/munge/munged.pid"
    record munged "$(cat "$DIR/munge/munged.pid")"

    # GPUs for GRES: character devices of our own (see above), as many as GPU jobs may run at once.
    for i in $(seq 0 $((GPUS - 1))); do mknod "$DIR/fake-gpu$i" c 1 3; done

    # slurmdbd reads slurmdbd.conf beside $SLURM_CONF.
    echo "export SLURM_CONF=$etc/slurm.conf" > "$DIR/env"
    export SLURM_CONF=$etc/slurm.conf
    local acct="AccountingStorageType=accounting_storage/none"
    if [ "$ACCOUNTING" = 1 ]; then
        local dbport=$((BASE_PORT + 3)) dbsock=$DIR/mysql/mysqld.sock
        mariadb-install-db --no-defaults --datadir="$DIR/mysql/data" --user=root \
            --auth-root-authentication-method=normal >"$DIR/log/mariadb-install.log" 2>&1
        mariadbd --no-defaults --datadir="$DIR/mysql/data" --socket="$dbsock" --port="$dbport" \
            --bind-address=127.0.0.1 --skip-name-resolve --user=root --pid-file="$DIR/mysql/mariadbd.pid" \
            --log-error="$DIR/log/mariadbd.log" --innodb-buffer-pool-size=64M &
        record mariadbd $!
        wait_for 60 mariadbd mariadb --no-defaults --socket="$dbsock" -uroot -e 'select 1'
        mariadb --no-defaults --socket="$dbsock" -uroot -e \
            "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'ci'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
        cat > "$etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$sock
DbdHost=$HOST
DbdAddr=127.0.0.1
DbdPort=$((BASE_PORT + 2))
SlurmUser=root
PidFile=$DIR/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$dbport
StorageUser=slurm
StoragePass=ci
StorageLoc=slurm_acct_db
CONF
        chmod 600 "$etc/slurmdbd.conf"
        acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((BASE_PORT + 2))
AccountingStoragePass=$sock
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment"
    fi

    local mem; mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    cat > "$etc/slurm.conf" <<CONF
ClusterName=soften-ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$BASE_PORT
SlurmdPort=$((BASE_PORT + 1))
AuthType=auth/munge
AuthInfo=socket=$sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=$MIN_JOB_AGE
KillWait=10
InactiveLimit=0
GresTypes=gpu
$acct
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$mem Gres=gpu:$GPUS State=UNKNOWN
PartitionName=ci Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
    echo "NodeName=$HOST Name=gpu File=$DIR/fake-gpu[0-$((GPUS - 1))]" > "$etc/gres.conf"
    if [ "$ACCOUNTING" = 1 ]; then
        start_daemon slurmdbd "$DIR/slurmdbd.pid" slurmdbd
        wait_for 30 slurmdbd sacctmgr -i list cluster
        timeout 20 sacctmgr -i add cluster soften-ci >/dev/null
    fi
    # The plugin's job step drops SLURM_* variables, SLURM_CONF among them, before its
    # srun: inside a job only the default path finds the cluster. Linked while it runs.
    if [ ! -e /etc/slurm/slurm.conf ]; then
        mkdir -p /etc/slurm && ln -s "$etc/slurm.conf" /etc/slurm/slurm.conf && echo /etc/slurm/slurm.conf > "$DIR/linked"
    elif [ "$(readlink /etc/slurm/slurm.conf)" != "$etc/slurm.conf" ]; then
        echo "slurm-cluster: /etc/slurm/slurm.conf exists (another cluster's?): jobs' srun will read it" >&2
    fi
    start_daemon slurmctld "$DIR/slurmctld.pid" slurmctld -f "$etc/slurm.conf"
    start_daemon slurmd "$DIR/slurmd.pid" slurmd -f "$etc/slurm.conf"
    wait_for 60 "node $HOST" bash -c "sinfo -h -N -o %T | grep -qE '^(idle|mixed|allocated)'"
    echo "slurm-cluster: up in $DIR (accounting: $([ "$ACCOUNTING" = 1 ] && echo slurmdbd || echo none)); . $DIR/env"
}

stop() {
    # Reverse start order; each daemon by the PID recorded at its start, and only that.
    local name pid
    # Jobs first (this cluster's only: its SLURM_CONF), so that no job step outlives slurmd.
    if [ -s "$PIDS/slurmctld.pid" ]; then
        SLURM_CONF=$DIR/etc/slurm.conf timeout 20 scancel --user "$(id -un)" 2>/dev/null || true
        sleep 2
    fi
    for name in slurmd slurmctld slurmdbd mariadbd munged; do
        [ -s "$PIDS/$name.pid" ] || continue
        pid=$(cat "$PIDS/$name.pid")
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && { echo "slurm-cluster: $name ($pid) ignored TERM; killing" >&2; kill -9 "$pid" 2>/dev/null || true; }
        fi
        rm -f "$PIDS/$name.pid"
    done
    if [ -s "$DIR/linked" ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$DIR/etc/slurm.conf" ]; then
        rm -f /etc/slurm/slurm.conf "$DIR/linked"
    fi
    echo "slurm-cluster: stopped ($DIR kept for its logs)"
}

case $cmd in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop [DIR]" >&2; exit 2 ;;
esac
