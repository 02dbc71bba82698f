#!/usr/bin/env bash
# Data-parallel training with msrun, MindSpore's launcher (CPU, GPU, Ascend), on one node or several.
#
#   bash scripts/msrun_train.sh [options] -- TRAIN_ARGS...
#
#   one node, 8 devices:  bash scripts/msrun_train.sh --workers 8 -- -c configs/training/sky_video.yaml
#   CPU, 2 processes:     bash scripts/msrun_train.sh --workers 2 -- -c CONFIG --device_target CPU
#   2 nodes x 8 devices:  on each node (node_rank 0 on the node whose address is --master_addr):
#     bash scripts/msrun_train.sh --workers 8 --nodes 2 --node_rank 0 --master_addr 10.0.0.1 -- -c CONFIG
#     bash scripts/msrun_train.sh --workers 8 --nodes 2 --node_rank 1 --master_addr 10.0.0.1 -- -c CONFIG
#
# Options:
#   --workers N        processes on this node, one per device (default 8)
#   --nodes M          nodes taking part, each running this script with the same options (default 1)
#   --node_rank R      this node's index, 0..M-1; node R runs ranks R*N .. R*N+N-1 (default 0)
#   --master_addr A    address of node 0, where msrun starts the scheduler (default 127.0.0.1; needed for M > 1)
#   --master_port P    scheduler port (default 8118)
#   --log_dir D        msrun's logs: scheduler.log and worker_<rank>.log (default OUTPUT_PATH/msrun_logs, where
#                      OUTPUT_PATH is the --output_path among TRAIN_ARGS, else msrun_logs)
#   --timeout S        seconds to wait for all processes to join before giving up (default 600)
#   --script F         the script to launch (default train.py; e.g. tools/embedding_cache.py if it supports
#                      --use_parallel)
# TRAIN_ARGS go to the script, followed by --use_parallel True. msrun runs the `python` found on PATH: activate
# the environment with MindSpore first. The script waits for the run and exits with its status; if a process
# fails, msrun stops the others.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
workers=8 nodes=1 node_rank=0 master_addr=127.0.0.1 master_port=8118 log_dir="" timeout=600 script=train.py

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }
fail() { echo "msrun_train.sh: $*" >&2; exit 2; }
is_int() { [[ "$1" =~ ^[0-9]+$ ]]; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --workers) workers="${2:?}"; shift 2 ;;
        --nodes) nodes="${2:?}"; shift 2 ;;
        --node_rank) node_rank="${2:?}"; shift 2 ;;
        --master_addr) master_addr="${2:?}"; shift 2 ;;
        --master_port) master_port="${2:?}"; shift 2 ;;
        --log_dir) log_dir="${2:?}"; shift 2 ;;
        --timeout) timeout="${2:?}"; shift 2 ;;
        --script) script="${2:?}"; shift 2 ;;
        --) shift; break ;;
        -h|--help) usage ;;
        *) fail "unknown option $1 (script arguments go after --; --help lists the options)" ;;
    esac
done

for name in workers nodes node_rank master_port timeout; do
    is_int "${!name}" || fail "--$name ${!name}: expected a non-negative integer"
done
(( workers >= 1 && nodes >= 1 )) || fail "--workers and --nodes must be at least 1"
(( node_rank < nodes )) || fail "--node_rank $node_rank with --nodes $nodes: expected 0 <= node_rank < nodes"
if (( nodes > 1 )) && [[ "$master_addr" == 127.0.0.1 || "$master_addr" == localhost ]]; then
    fail "--nodes $nodes: give --master_addr, the address of node 0 that every node can reach"
fi
command -v msrun >/dev/null || fail "msrun not found: activate the Python environment where MindSpore is installed"
[[ -f "$ROOT/$script" ]] || fail "--script $script: no such file under $ROOT"
for arg in "$@"; do
    [[ "$arg" != --use_parallel* ]] || fail "leave out --use_parallel: this script adds --use_parallel True"
done

if [[ -z "$log_dir" ]]; then
    log_dir=msrun_logs
    args=("$@")
    for ((i = 0; i < ${#args[@]} - 1; i++)); do
        [[ "${args[i]}" == --output_path ]] && log_dir="${args[i + 1]}/msrun_logs"
    done
fi

# The scheduler runs on node 0: refuse a port that something already listens on there, instead of letting
# every process wait --timeout seconds for a cluster that cannot form.
if (( node_rank == 0 )) && (exec 3<>"/dev/tcp/$master_addr/$master_port") 2>/dev/null; then
    fail "port $master_port on $master_addr is in use by another program (or an earlier run):" \
         "choose another --master_port"
fi

echo "msrun: $((workers * nodes)) processes ($workers on this node, node $node_rank of $nodes), scheduler" \
     "$master_addr:$master_port, logs in $log_dir" >&2
exec msrun --worker_num=$((workers * nodes)) --local_worker_num="$workers" --node_rank="$node_rank" \
    --master_addr="$master_addr" --master_port="$master_port" --log_dir="$log_dir" --join=True \
    --cluster_time_out="$timeout" python "$ROOT/$script" "$@" --use_parallel True
