#!/usr/bin/env bash
# Data-parallel training on Ascend NPUs of one machine with an HCCL rank table (no msrun, no scheduler).
#
#   bash scripts/run_distributed_sky_numpy_video.sh RANK_TABLE.json START_DEVICE NUM_PROCESSES [TRAIN_ARGS...]
#   e.g. bash scripts/run_distributed_sky_numpy_video.sh hccl_4p_4567.json 4 4 --data_config.data_folder DIR
#
# RANK_TABLE.json lists exactly the NUM_PROCESSES devices START_DEVICE .. START_DEVICE+NUM_PROCESSES-1 of this
# machine (e.g. written by MindSpore's hccl_tools.py --visible_devices 4,5,6,7). Process i runs on device
# START_DEVICE+i with the rank id the table gives that device; RANK_TABLE_FILE, DEVICE_ID, RANK_ID and RANK_SIZE
# are exported to it. TRAIN_ARGS go to train.py after -c CONFIG --output_path OUTPUT --use_parallel True.
#
# Environment: CONFIG (default configs/training/sky_numpy_video.yaml, trains on the embedding cache),
# OUTPUT (default outputs/sky_numpy_video_train), PYTHON (default python).
# Every rank's console output goes to OUTPUT/rank_logs/rank_<k>.log (train.py also writes OUTPUT/train.log on
# rank 0 and OUTPUT/train_rank<k>.log on the others). The script waits for all ranks; when one fails it stops
# the others (HCCL would otherwise wait for it until its own timeout) and exits with that rank's status.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fail() { echo "run_distributed_sky_numpy_video.sh: $*" >&2; exit 2; }

if [[ $# -lt 3 ]]; then
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
rank_table="$1" start_device="$2" num="$3"
shift 3
config="${CONFIG:-configs/training/sky_numpy_video.yaml}"
output="${OUTPUT:-outputs/sky_numpy_video_train}"
python_bin="${PYTHON:-python}"

[[ "$start_device" =~ ^[0-9]+$ && "$num" =~ ^[0-9]+$ ]] && (( num >= 1 )) \
    || fail "START_DEVICE and NUM_PROCESSES must be integers (got '$start_device' '$num')"
[[ -f "$rank_table" ]] || fail "rank table $rank_table not found"
[[ -f "$config" ]] || fail "config $config not found (run from the repository root, or set CONFIG=...)"
rank_table="$(cd "$(dirname "$rank_table")" && pwd)/$(basename "$rank_table")"

# "<device_id> <rank_id>" per process, after checking the table lists exactly these devices
ranks="$(python - "$rank_table" "$start_device" "$num" <<'EOF'
import json, sys
path, start, num = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    with open(path) as f:
        table = json.load(f)
    devices = [d for server in table["server_list"] for d in server["device"]]
    rank_of = {int(d["device_id"]): int(d["rank_id"]) for d in devices}
except (OSError, ValueError, KeyError, TypeError) as err:
    sys.exit(f"{path} is not an HCCL rank table (version 1.0: server_list[].device[] with device_id and "
             f"rank_id): {err}")
wanted = list(range(start, start + num))
if len(table["server_list"]) != 1 or sorted(rank_of) != wanted or len(devices) != num:
    sys.exit(f"{path} lists devices {sorted(rank_of)} on {len(table['server_list'])} server(s); this script runs "
             f"devices {wanted} of one machine: give a table of exactly these (hccl_tools.py --visible_devices)")
if sorted(rank_of.values()) != list(range(num)):
    sys.exit(f"{path}: rank ids {sorted(rank_of.values())} are not 0..{num - 1}")
for device in wanted:
    print(device, rank_of[device])
EOF
)" || fail "bad rank table (see above)"

log_dir="$output/rank_logs"
mkdir -p "$log_dir"
export RANK_TABLE_FILE="$rank_table" RANK_SIZE="$num"
declare -A rank_of_pid=()
while read -r device rank; do
    log="$log_dir/rank_$rank.log"
    echo "rank $rank on device $device: log $log" >&2
    DEVICE_ID="$device" RANK_ID="$rank" "$python_bin" "$ROOT/train.py" -c "$config" --output_path "$output" \
        --use_parallel True "$@" >"$log" 2>&1 &
    rank_of_pid[$!]=$rank
done <<<"$ranks"

stop_all() { for pid in "${!rank_of_pid[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap 'stop_all; exit 130' INT TERM
status=0
while (( ${#rank_of_pid[@]} > 0 )); do  # poll (bash 4 has no `wait -n -p`); bash reaps finished ranks itself
    sleep 1
    for pid in "${!rank_of_pid[@]}"; do
        ! kill -0 "$pid" 2>/dev/null || continue
        wait "$pid" && code=0 || code=$?
        rank="${rank_of_pid[$pid]}"
        unset "rank_of_pid[$pid]"
        if (( code != 0 && status == 0 )); then
            status=$code
            echo "rank $rank failed (exit code $code), stopping the others; its log $log_dir/rank_$rank.log ends:" >&2
            tail -n 20 "$log_dir/rank_$rank.log" >&2
            stop_all
        fi
    done
done
if (( status == 0 )); then
    echo "all $num ranks finished; outputs in $output" >&2
fi
exit "$status"
