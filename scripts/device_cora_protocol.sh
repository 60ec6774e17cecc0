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
# writes $OUT/summary.json: runs recorded, failed, test accuracy mean ± std, epochs, wall time, whether the budget cut
# it, runs per second in this call and the time all requested runs would take at that rate; $OUT/cora_<device>.jsonl
# holds the records.
#
# Settings (environment): DEVICE (cuda), SPLITS (100), INITS (20), BUDGET_S (420), SMOKE_S (120), ROOT (.devdata),
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
    cp "$src/npz/cora.npz" "$ROOT/npz/"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 -d .whl torchsde==0.2.6 trampoline==0.1.2 || return 1
    echo "prepared: $ROOT/npz/cora.npz and $(ls .whl | tr '\n' ' ')"
}

run() {
    local out=${OUT:-$PWD/device_out} device=${DEVICE:-cuda} splits=${SPLITS:-100} inits=${INITS:-20}
    local budget=${BUDGET_S:-420} smoke_s=${SMOKE_S:-120} dir=${RECORDS_DIR:-runs/device}
    local tag=${device//[^A-Za-z0-9]/_}  # cuda:0 -> cuda_0: files from $OUT come back only with plain names
    local records=$dir/cora_$tag.jsonl
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
    export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
    "$PY" - "$out/env.json" "$device" <<'EOF' || return 1
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
EOF
    local common=(--dataset cora --root "$ROOT" --model coin --layer-num 20 --sigma2 0.35 --allow-unstable
                  --device "$device" --batch-inits --no-progress --json)
    local t0 rc
    t0=$SECONDS
    timeout "$smoke_s" "$PY" -m nsde_coin.cli graph "${common[@]}" --splits 1 --inits "$inits" \
        --out "$dir/smoke_$tag.jsonl" >"$out/smoke.json"
    rc=$?
    echo "smoke: rc $rc in $((SECONDS - t0)) s"
    [[ $rc -eq 0 ]] || { cat "$out/smoke.json"; return 1; }
    local before
    before=$(cat "$records" 2>/dev/null | grep -c .)  # records of an earlier, cut call (the protocol resumes)
    t0=$SECONDS
    timeout "$budget" "$PY" -m nsde_coin.cli graph "${common[@]}" --splits "$splits" --inits "$inits" \
        --out "$records" >"$out/full.json"
    rc=$?
    local wall=$((SECONDS - t0))
    cp "$records" "$out/cora_$tag.jsonl" 2>/dev/null
    "$PY" - "$records" "$out/summary.json" "$rc" "$wall" "$budget" "$splits" "$inits" "$before" <<'EOF'
import json, statistics, sys
path, dest, rc, wall, budget, splits, inits, before = sys.argv[1:]
recs = []
try:
    lines = open(path).read().splitlines()
except FileNotFoundError:  # cut before the first batch finished
    lines = []
for line in lines:
    try:
        recs.append(json.loads(line))
    except ValueError:  # a line cut by the budget
        pass
ok = [r for r in recs if r.get("status") == "ok"]
acc = [100 * r["test_acc"] for r in ok]
out = {"requested": int(splits) * int(inits), "recorded": len(recs), "ok": len(ok), "failed": len(recs) - len(ok),
       "test_acc_mean": statistics.fmean(acc) if acc else None,
       "test_acc_std": statistics.stdev(acc) if len(acc) > 1 else None,
       "epochs_mean": statistics.fmean(r["epochs"] for r in ok) if ok else None,
       "this_call_wall_s": float(wall), "budget_s": int(budget), "cut_by_budget": rc == "124", "rc": int(rc),
       "complete": len(recs) >= int(splits) * int(inits), "recorded_before_this_call": int(before)}
new = len(recs) - int(before)
out["runs_per_s_this_call"] = new / float(wall) if new > 0 and float(wall) > 0 else None
out["projected_s_for_all"] = out["requested"] / out["runs_per_s_this_call"] if out["runs_per_s_this_call"] else None
json.dump(out, open(dest, "w"), indent=1)
print(json.dumps(out))
EOF
}

case ${1:-run} in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: bash scripts/device_cora_protocol.sh [prepare|run]; got '$1'" >&2; exit 2 ;;
esac
