# Prints bench/run's summary: one line per Loom case and reference, `case  loom=<v> ref=<v>
# ratio=<loom/ref>`, from Google Benchmark JSON and torch_reference.py's JSON. A Loom case's label
# names its references ("vs A,B target X"): counters "A <unit>" of its own runs (a paired_loop) or
# torch_reference.py's cases. Every value is the best (highest-throughput) repetition.
import json
import sys

UNITS = ("GFLOP/s", "GB/s", "MB/s")


def best_rates(paths):
    """{name: {counter: best value}} over all repetitions, and {name: label}."""
    rates, labels = {}, {}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        if "benchmarks" not in data:  # torch_reference.py: {name: {unit: rate}}
            rates.update(data)
            continue
        for run in data["benchmarks"]:
            if run.get("run_type") != "iteration" or run.get("error_occurred"):
                continue
            name = run["run_name"].split("/manual_time")[0].split("/real_time")[0]
            best = rates.setdefault(name, {})
            for key, value in run.items():
                if key.endswith(UNITS) and isinstance(value, (int, float)):
                    best[key] = max(best.get(key, 0.0), value)
            labels[name] = run.get("label", "")
    return rates, labels


def parse_label(label):
    """'vs A,B target 0.9' -> (['A', 'B'], 0.9)."""
    words = label.split()
    if not words or words[0] != "vs":
        return [], None
    target = float(words[3]) if len(words) >= 4 and words[2] == "target" else None
    return words[1].split(","), target


def main(paths):
    rates, labels = best_rates(paths)
    missed = 0
    for name in sorted(labels):
        refs, target = parse_label(labels[name])
        unit = next((u for u in UNITS if u in rates[name]), None)
        for ref in refs:
            case = name.removeprefix("loom/") + ("" if len(refs) == 1 else f" vs {ref}")
            value = rates[name].get(f"{ref} {unit}") or rates.get(ref, {}).get(unit)
            source = ref if f"{ref} {unit}" in rates[name] else ref.split("/")[0]
            if unit is None or not value:
                print(f"{case:<44} loom=? ref=missing ({ref})")
                missed += 1
                continue
            loom = rates[name][unit]
            ratio = loom / value
            verdict = ""
            if target is not None:
                missed += ratio < target
                verdict = f"  target>={target:g} {'ok' if ratio >= target else 'MISSED'}"
            print(f"{case:<44} loom={loom:<9.2f} ref={value:<9.2f} ratio={ratio:.2f}  {unit} vs {source}{verdict}")
    print(f"summary: {missed} case(s) missed a target or lack a reference" if missed else "summary: every target met")


if __name__ == "__main__":
    main(sys.argv[1:])
