#!/usr/bin/env bash
# Every check that needs a GPU, as one command for a machine that has one (CI never does).
#
#   bash scripts/gpu_check.sh DATA_DIR OUT_DIR
#
# DATA_DIR: the prepared Cornell pairs (`chatbot prepare ../shared/data/cornell/pairs_all_movies.tsv --out
# corpus/prepared/cornell-word`, about 20 s on a laptop CPU). OUT_DIR gets seven small files:
#   env.txt                       GPU, driver, torch, CUDA and cuDNN versions
#   bench_train.txt/.json         scripts/bench_train.py: (a) vs (b) vs (c) tokens/s and time-to-quality
#   pytest_gpu.txt                the `gpu`-marked tests
#   train.txt, log.jsonl, loss.png  a full training run of the tutorial's model with (c)'s settings
# Runs from the repository root with only torch, numpy, pandas, sentencepiece, tqdm, matplotlib,
# sacrebleu and pytest installed (no gradio or pooch needed). Each step has its own time limit and
# a failing step does not stop the next, so one run gives every answer it can. It ends within TOTAL seconds
# (default 570): the training run gets whatever the tests and the benchmark left.
# BENCH_ARGS and TRAIN_ARGS add flags to those steps (e.g. a tiny model to try the script on a CPU).
set -u
data=${1:?usage: gpu_check.sh DATA_DIR OUT_DIR}
out=${2:?usage: gpu_check.sh DATA_DIR OUT_DIR}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to OUT/NAME.txt, report the status
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
    echo "== $name: exit ${PIPESTATUS[0]}" | tee -a "$out/$name.txt"
}

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', \
torch.backends.cudnn.version(), 'gpu', torch.cuda.get_device_name() if torch.cuda.is_available() else None)"
    date -u
} 2>&1 | tee "$out/env.txt"

step pytest_gpu 90 $py -m pytest -q -p no:cacheprovider -m gpu tests/chatbot/test_train.py \
    tests/chatbot/test_checkpoint.py tests/chatbot/test_reply.py tests/foundations/test_cifar10.py

# The issue's targets: (c) >= 100x (a) in tokens/s, time-to-quality <= 1/20. Each (c) candidate gets at
# most 0.1 of (a)'s time to reach (a)'s loss, twice the target.
step bench_train 400 $py scripts/bench_train.py "$data" --json "$out/bench_train.json" --max-ratio 0.1 \
    ${BENCH_ARGS:-}

# A full run of the tutorial's model (hidden 500) with the benchmark's best settings, in whatever is left
# of ${TOTAL:-570} s; best.pt keeps the lowest validation loss. Checkpoints stay in /tmp (hundreds of MB);
# the log and plot come back.
read -r batch lr < <($py -c "import json; b = json.load(open('$out/bench_train.json'))['best']; \
print(b['batch_size'], b['learning_rate'])" 2>/dev/null || echo "1024 1e-3")
left=$((${TOTAL:-570} - SECONDS - 25))  # 25 s for start-up, the last validation and saving
if [ "$left" -gt 20 ]; then
    rm -rf /tmp/gpu_check_run
    step train $((left + 25)) $py -m chatbot train "$data" --out /tmp/gpu_check_run --batch-size "$batch" \
        --learning-rate "$lr" --max-steps 0 --time-budget-minutes "$(awk "BEGIN {print $left / 60}")" \
        --eval-every 50 --save-every 0 --no-progress ${TRAIN_ARGS:-}
    cp /tmp/gpu_check_run/log.jsonl /tmp/gpu_check_run/loss.png "$out/" 2>/dev/null
else
    echo "== train: skipped, only ${left} s left"
fi
echo "== done in ${SECONDS} s: results in $out"
