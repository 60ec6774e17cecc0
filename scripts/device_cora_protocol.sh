#!/usr/bin/env bash
# Issue 12.3 on a lent GPU machine, as one bounded command: the full 100 × 20 Cora protocol (paper setting) with all
# inits of a split in one batched model (--batch-inits) on --device cuda, then a summary.
#
# Two steps, because the device machine reaches no network and has no torchsde (its image has torch, torchdiffeq
# and torch-geometric; /work/.library/device/KINDS.md) and ../shared does not travel with the working tree:
#
#   here:   bash scripts/device_cora_protocol.sh prepare
#           (copies Cora's npz from ../shared/data to .devdata/ and downloads the torchsde and trampoline wheels to
#           .whl/ -- both folders are git-ignored, 0.5 MB together)
#   there:  the device tool's run, carry [".devdata", ".whl"], command
#           bash scripts/device_cora_protocol.sh run        (timeout_s 600)
#
# `run` installs the wheels into /tmp/site, records the machine (torch, CUDA, GPU) in $OUT/env.json, runs a smoke
# split (1 × INITS, must finish in SMOKE_S seconds), then the protocol under a wall-clock budget of BUDGET_S seconds
# (timeout; the records already written stay: the protocol resumes from its --out file, which lives under runs/ in
# the working tree and so survives on a warm machine, and a second `run` continues where the first was cut), and
# writes $OUT/summary.json (scripts/device_summary.py): runs recorded, failed, test accuracy mean ± std, epochs,
# wall time, whether the budget or a signal stopped it, runs per second in this call and the time all requested runs
# would take at that rate; $OUT/cora_<device>.jsonl holds the records, full.err and smoke.err the commands' stderr.
# A TERM (the device tool's own limit) still copies the records and writes the summary.  The defaults (90 s smoke,
# 360 s budget) leave ~2 minutes of a 600 s call for installing, starting and summarising.
#
# Settings (environment): DEVICE (cuda), SPLITS (100), INITS (20), BUDGET_S (360), SMOKE_S (90), ROOT (.devdata),
# RECORDS_DIR (runs/device, git-ignored), PYTHON (python3), OUT (the device tool sets it; default ./device_out).
# The same command runs on a CPU as a check of the script itself (tests/commands/test_device_script.py), e.g.
# `DEVICE=cpu SPLITS=1 INITS=2 bash scripts/device_cora_protocol.sh run`.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
ROOT=${ROOT:-.devdata}

prepare() {
    local src=${SHARED_DATA:-../shared/data}
    if [[ ! -f $src/npz/cora.npz ]]; then
        echo "prepare: $src/npz/cora.npz not found (set SHARED_DATA to the folder holding npz/cora.npz)" >&2
        return 2
    fi
    mkdir -p "$ROOT/npz" .whl
    cp -f "$src/npz/cora.npz" "$ROOT/npz/" || return 1
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 -d .whl torchsde==0.2.6 trampoline==0.1.2 || return 1
    echo "prepared: $ROOT/npz/cora.npz and $(ls .whl | tr '\n' ' ')"
}

run() {
    local out=${OUT:-$PWD/device_out} device=${DEVICE:-cuda} splits=${SPLITS:-100} inits=${INITS:-20}
    local budget=${BUDGET_S:-360} smoke_s=${SMOKE_S:-90} dir=${RECORDS_DIR:-runs/device}
    local tag=${device//[^A-Za-z0-9]/_}  # cuda:0 -> cuda_0: files from $OUT come back only with plain names
    local records=$dir/cora_$tag.jsonl summary=scripts/device_summary.py
    if [[ ! -f $ROOT/npz/cora.npz ]]; then
        echo "run: $ROOT/npz/cora.npz not found: run 'bash scripts/device_cora_protocol.sh prepare' here first and" \
            "carry $ROOT" >&2
        return 2
    fi
    mkdir -p "$out" "$dir"
    if compgen -G ".whl/*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl || return 1
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
    "$PY" - "$out/env.json" "$device" <<'PYEND' || return 1
import json, os, platform, sys
import torch
dev = sys.argv[2]
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "device": dev, "cpu_count": os.cpu_count()}
if dev.startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit(f"run: DEVICE={dev} but torch.cuda.is_available() is False (torch {torch.__version__})")
    info["gpu"] = torch.cuda.get_device_name(0)
json.dump(info, open(sys.argv[1], "w"), indent=1)
print(json.dumps(info))
PYEND
    local common=(--dataset cora --root "$ROOT" --model coin --layer-num 20 --sigma2 0.35 --allow-unstable
                  --device "$device" --batch-inits --no-progress --json)
    local t0 rc before pid
    t0=$SECONDS
    timeout "$smoke_s" "$PY" -m nsde_coin.cli graph "${common[@]}" --splits 1 --inits "$inits" \
        --out "$dir/smoke_$tag.jsonl" >"$out/smoke.json" 2>"$out/smoke.err"
    rc=$?
    echo "smoke: rc $rc in $((SECONDS - t0)) s"
    [[ $rc -eq 0 ]] || { tail -5 "$out/smoke.err" >&2; return 1; }
    before=$("$PY" "$summary" count "$records")  # records of an earlier, cut call: the protocol resumes
    t0=$SECONDS
    # in the background and waited for, so that a TERM from outside (the device tool's own time limit) runs the
    # trap at once: the records written so far and their summary still reach $OUT
    timeout "$budget" "$PY" -m nsde_coin.cli graph "${common[@]}" --splits "$splits" --inits "$inits" \
        --out "$records" >"$out/full.json" 2>"$out/full.err" &
    pid=$!
    finish() {
        cp "$records" "$out/cora_$tag.jsonl" 2>/dev/null
        "$PY" "$summary" summary "$records" "$out/summary.json" "$1" "$((SECONDS - t0))" "$budget" "$splits" \
            "$inits" "$before"
    }
    trap 'kill "$pid" 2>/dev/null; wait "$pid"; finish 143; exit 143' TERM INT
    wait "$pid"
    rc=$?
    trap - TERM INT
    finish "$rc"
}

case ${1:-run} in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: bash scripts/device_cora_protocol.sh [prepare|run]; got '$1'" >&2; exit 2 ;;
esac
