#!/usr/bin/env bash
# A single-node Slurm on this machine from Debian's packages (slurm-wlm, munge): munged, slurmctld and slurmd
# on localhost, proctrack/linuxproc, no cgroups, no accounting. Everything lives in one state directory; nothing
# under /etc is changed. For the cluster tests (`make test-slurm`) and for trying the sbatch templates of
# Docs/scale.md.
#
#   scripts/slurm-local.sh up      installs the packages if missing, starts the daemons, waits for the node
#   scripts/slurm-local.sh down    stops them (the state directory stays for inspection)
#   scripts/slurm-local.sh env     prints `export SLURM_CONF=...` for sbatch/squeue/scancel
#
#   SLURM_LOCAL_DIR (default /tmp/coto-slurm): the state directory (config, logs, spool, munge socket).
set -euo pipefail

DIR="${SLURM_LOCAL_DIR:-/tmp/coto-slurm}"
CONF="$DIR/slurm.conf"
SOCK="$DIR/munge/munge.socket"
NODE="$(hostname -s)"

die() { echo "slurm-local: $*" >&2; exit 1; }

install_packages() {
  local missing=()
  for p in slurm-wlm munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "slurm-local: installing ${missing[*]}"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_config() {
  mkdir -p "$DIR"/{munge,ctld,spool,log}
  local cpus mem user
  cpus="$(nproc)"
  mem="$(awk '/MemTotal/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)"
  user="$(id -un)"
  # The munge key: Debian's package makes one; otherwise one of our own.
  if [ -r /etc/munge/munge.key ]; then
    cp /etc/munge/munge.key "$DIR/munge/munge.key"
  else
    head -c 1024 /dev/urandom > "$DIR/munge/munge.key"
  fi
  chmod 700 "$DIR/munge" && chmod 400 "$DIR/munge/munge.key"
  cat > "$CONF" <<EOF
# Written by scripts/slurm-local.sh: one node ($NODE), everything under $DIR.
ClusterName=cotolocal
SlurmctldHost=$NODE
SlurmUser=$user
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$SOCK
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=600
MaxArraySize=10001
NodeName=$NODE CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=2048
EOF
}

up() {
  install_packages
  if [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; then
    echo "slurm-local: already up ($CONF)"
    return 0
  fi
  # Another Slurm on these ports (one started with another SLURM_LOCAL_DIR, or a system one) would answer in our
  # place: refuse instead.
  for port in 6817 6818; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      die "port $port is in use (another slurmctld/slurmd?); stop it first (scripts/slurm-local.sh down with its SLURM_LOCAL_DIR)"
    fi
  done
  write_config
  munged --force --socket="$SOCK" --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munge/munged.pid" \
    --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
  export SLURM_CONF="$CONF"
  slurmctld -f "$CONF" -i
  slurmd -f "$CONF"
  # Wait until the node takes jobs.
  local state=""
  for _ in $(seq 1 60); do
    state="$(sinfo -h -n "$NODE" -o %t 2>/dev/null || true)"
    case "$state" in idle*|mix*|alloc*) break ;; esac
    sleep 0.5
  done
  # Our controller must be the one that answered.
  if ! kill -0 "$(cat "$DIR/slurmctld.pid" 2>/dev/null || echo 0)" 2>/dev/null; then
    tail -n 5 "$DIR/log/slurmctld.log" >&2 || true
    die "slurmctld did not stay up; logs in $DIR/log"
  fi
  case "$state" in
    idle*|mix*|alloc*) ;;
    *) tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true; die "node $NODE did not come up (state '$state'); logs in $DIR/log" ;;
  esac
  echo "slurm-local: up, node $NODE ($(nproc) CPUs); export SLURM_CONF=$CONF"
}

down() {
  export SLURM_CONF="$CONF"
  [ -f "$CONF" ] && scancel --user="$(id -un)" 2>/dev/null || true
  for pidf in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"; do
    [ -f "$pidf" ] || continue
    local pid; pid="$(cat "$pidf")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidf"
  done
  echo "slurm-local: down (state in $DIR)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) die "usage: $0 up|down|env" ;;
esac
