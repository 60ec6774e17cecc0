"""The records' summary for scripts/device_cora_protocol.sh (standard library only: it runs where torch may not).

    python scripts/device_summary.py count PATH
    python scripts/device_summary.py summary PATH DEST RC WALL_S BUDGET_S SPLITS INITS BEFORE

``count`` prints how many whole records PATH holds (0 when it does not exist); ``summary`` writes DEST (JSON) and
prints it: runs recorded, ok and failed, test accuracy mean ± std (%), epochs, this call's wall time, whether the
budget (rc 124) or a signal (rc 143) stopped it, and runs per second in this call against BEFORE, the count an
earlier, cut call left (the protocol resumes from its records). A line cut mid-write is not a record.
"""

from __future__ import annotations

import json
import statistics
import sys


def records(path: str) -> list[dict]:
    """The whole JSON records of a JSON-lines file, in order; [] when it does not exist."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:  # stopped before the first batch finished
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:  # a line cut by the budget
            pass
    return out


def summary(path: str, rc: int, wall_s: float, budget_s: int, splits: int, inits: int, before: int) -> dict:
    """The summary of the records at ``path`` after a call that ended with ``rc`` after ``wall_s`` seconds."""
    recs = records(path)
    ok = [r for r in recs if r.get("status") == "ok"]
    acc = [100 * r["test_acc"] for r in ok]
    new = len(recs) - before
    rate = new / wall_s if new > 0 and wall_s > 0 else None
    return {"requested": splits * inits, "recorded": len(recs), "ok": len(ok), "failed": len(recs) - len(ok),
            "test_acc_mean": statistics.fmean(acc) if acc else None,
            "test_acc_std": statistics.stdev(acc) if len(acc) > 1 else None,
            "epochs_mean": statistics.fmean(r["epochs"] for r in ok) if ok else None,
            "this_call_wall_s": wall_s, "budget_s": budget_s, "cut_by_budget": rc == 124,
            "stopped_by_signal": rc == 143, "rc": rc, "complete": len(recs) >= splits * inits,
            "recorded_before_this_call": before, "runs_per_s_this_call": rate,
            "projected_s_for_all": splits * inits / rate if rate else None}


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "count":
        print(len(records(argv[1])))
        return 0
    if len(argv) == 9 and argv[0] == "summary":
        path, dest = argv[1], argv[2]
        rc, wall, budget, splits, inits, before = int(argv[3]), float(argv[4]), *map(int, argv[5:])
        out = summary(path, rc, wall, budget, splits, inits, before)
        with open(dest, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
        print(json.dumps(out))
        return 0
    print("usage: device_summary.py count PATH | summary PATH DEST RC WALL_S BUDGET_S SPLITS INITS BEFORE; got "
          f"{argv!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
