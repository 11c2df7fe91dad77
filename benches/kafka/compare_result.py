"""Checks a comparison result and adds what Kafka's own load tools printed to it.

    python3 benches/kafka/compare_result.py RESULT_STEM [WORK_DIR RECORDS]

RESULT_STEM.json is what `loadgen compare` wrote. Every broker's run must have delivered
every acknowledged record to the consumers once and in order, with no errors; a missed
throughput or latency target is a result, reported in its verdict, not a failure here.
With WORK_DIR: it holds, per broker (ringlog, kafka), the command and output of
kafka-producer-perf-test and kafka-consumer-perf-test as benches/kafka-compare.sh wrote
them. Their summary lines are parsed into RESULT_STEM.json ("kafka_tools") and a table with
the ringlog/kafka ratio is appended to RESULT_STEM.md, every line they printed kept beside
it; each tool must have sent and read back all RECORDS records without an error.
Exits 1, naming each problem, when a check fails.
"""
import json
import math
import re
import sys
from pathlib import Path

BROKERS = ["ringlog", "kafka"]

# ProducerPerformance's final line.
PRODUCER_SUMMARY = re.compile(
    r"(?P<records>\d+) records sent, (?P<records_per_s>[\d.]+) records/sec "
    r"\((?P<mb_per_s>[\d.]+) MB/sec\), (?P<avg_ms>[\d.]+) ms avg latency, "
    r"(?P<max_ms>[\d.]+) ms max latency, (?P<p50_ms>\d+) ms 50th, (?P<p95_ms>\d+) ms 95th, "
    r"(?P<p99_ms>\d+) ms 99th, (?P<p999_ms>\d+) ms 99.9th"
)


def read(path):
    return path.read_text() if path.exists() else ""


def producer_summary(text):
    for line in reversed(text.splitlines()):
        match = PRODUCER_SUMMARY.search(line)
        if match:
            return {k: float(v) for k, v in match.groupdict().items()}
    return None


def consumer_summary(text):
    """ConsumerPerformance prints a CSV header and one line of values."""
    lines = [l for l in text.splitlines() if l.strip()]
    for at, line in enumerate(lines[:-1]):
        if line.startswith("start.time"):
            names = [n.strip() for n in line.split(",")]
            values = [v.strip() for v in lines[at + 1].split(",")]
            summary = dict(zip(names, values))
            return {
                "records": int(float(summary["data.consumed.in.nMsg"])),
                "records_per_s": float(summary["nMsg.sec"]),
                "mb": float(summary["data.consumed.in.MB"]),
                "mb_per_s": float(summary["MB.sec"]),
                "fetch_records_per_s": float(summary["fetch.nMsg.sec"]),
            }
    return None


def errors(text):
    return [l for l in text.splitlines() if " ERROR " in l or "Exception" in l]


def delivery_problems(result):
    problems = []
    for entry in result["runs"]:
        name, checks = entry["name"], entry["run"]["checks"]
        if not checks["checked"]:
            problems.append(f"{name}: no consumers, delivery not checked")
        elif checks["missing"] or checks["repeated"] or checks["out_of_order"] or checks["errors"]:
            problems.append(
                f"{name}: {checks['missing']} missing, {checks['repeated']} repeated, "
                f"{checks['out_of_order']} out of order, {len(checks['errors'])} errors; "
                f"{(checks['errors'] or [checks['first_problem']])[0]}"
            )
    return problems


def main():
    stem = Path(sys.argv[1])
    result = json.loads(stem.with_suffix(".json").read_text())
    problems = delivery_problems(result)
    if len(sys.argv) > 2:
        problems += add_tools(result, stem, Path(sys.argv[2]), int(sys.argv[3]))
    for problem in problems:
        print(f"kafka-compare: {problem}", file=sys.stderr)
    sys.exit(1 if problems else 0)


def add_tools(result, stem, work, records):
    tools = {}
    problems = []
    for broker in BROKERS:
        entry = {}
        for tool in ["producer", "consumer"]:
            out = read(work / f"{broker}-{tool}-perf.txt")
            err = read(work / f"{broker}-{tool}-perf.err")
            summary = (producer_summary if tool == "producer" else consumer_summary)(out)
            entry[tool] = {
                "command": read(work / f"{broker}-{tool}-perf.cmd").strip(),
                "output": out.splitlines(),
                "errors": errors(err) + errors(out),
                "summary": summary,
            }
            if summary is None:
                problems.append(f"{broker}: kafka-{tool}-perf-test printed no summary")
            elif int(summary["records"]) != records:
                problems.append(
                    f"{broker}: kafka-{tool}-perf-test {'sent' if tool == 'producer' else 'read'} "
                    f"{int(summary['records'])} of {records} records"
                )
            if entry[tool]["errors"]:
                problems.append(f"{broker}: kafka-{tool}-perf-test: {entry[tool]['errors'][0]}")
        tools[broker] = entry

    result["kafka_tools"] = tools
    result["kafka_tools_problems"] = problems
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")

    def cell(value, decimals):
        return "-" if value is None else f"{value:,.{decimals}f}"

    def ratio_cell(value):
        """Two decimals, or two significant digits below 0.1 (0.0026, not 0.00)."""
        if value is None:
            return "-"
        if value >= 0.1 or value == 0:
            return f"{value:.2f}"
        return f"{value:.{1 - math.floor(math.log10(value))}f}"

    def figures(broker):
        p = tools[broker]["producer"]["summary"] or {}
        c = tools[broker]["consumer"]["summary"] or {}
        return [
            p.get("records_per_s"), p.get("mb_per_s"), p.get("p50_ms"), p.get("p99_ms"),
            p.get("p999_ms"), p.get("max_ms"), c.get("records_per_s"), c.get("mb_per_s"),
        ]

    md = [
        "",
        "## Kafka's own load tools",
        "",
        f"kafka-producer-perf-test, then kafka-consumer-perf-test reading the {records} records back,"
        " against each broker (commands and every line they printed below). Their latencies are"
        " the producer's send-to-acknowledgement times (not from an intended send time, as"
        " loadgen's are).",
        "",
        "| broker | producer records/s | MB/s | p50 / p99 / p99.9 / max ms | consumer records/s | MB/s |",
        "|---|---|---|---|---|---|",
    ]
    decimals = [0, 1, 0, 0, 0, 0, 0, 1]
    for broker in BROKERS:
        f = [cell(v, d) for v, d in zip(figures(broker), decimals)]
        md.append(f"| {broker} | {f[0]} | {f[1]} | {f[2]} / {f[3]} / {f[4]} / {f[5]} | {f[6]} | {f[7]} |")
    ratio = [
        None if a is None or not b else a / b for a, b in zip(figures("ringlog"), figures("kafka"))
    ]
    r = [ratio_cell(v) for v in ratio]
    md.append(f"| ringlog/kafka | {r[0]} | {r[1]} | {r[2]} / {r[3]} / {r[4]} / {r[5]} | {r[6]} | {r[7]} |")
    md.append("")
    md.append("Checks: " + ("; ".join(problems) if problems else
                           f"both tools sent and read back all {records} records on both brokers, no errors"))
    for broker in BROKERS:
        for tool in ["producer", "consumer"]:
            entry = tools[broker][tool]
            md += ["", f"{broker}: `{entry['command']}`", "", "```"] + entry["output"] + ["```"]
    with stem.with_suffix(".md").open("a") as out:
        out.write("\n".join(md) + "\n")
    return problems


if __name__ == "__main__":
    main()
