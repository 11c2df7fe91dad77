"""Medians over several comparison results, as README.md quotes them.

    python3 benches/kafka/summary.py results/compare/durable-1.json results/compare/durable-2.json ...

Prints one Markdown table: per figure, ringlog's and Kafka's median over the runs with
every run's value in brackets, and the median of the per-run ratios ringlog/Kafka.
"""
import json
import statistics
import sys


def loadgen(run):
    def get(*keys):
        value = run
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    return {
        "msg/s acknowledged (loadgen)": get("produced", "records_per_s"),
        "produce p50 ms": get("produce_latency", "p50_ms"),
        "produce p99 ms": get("produce_latency", "p99_ms"),
        "produce p99.9 ms": get("produce_latency", "p999_ms"),
        "end-to-end p99 ms": get("end_to_end_latency", "p99_ms"),
        "broker CPU s": get("cpu", "broker_s"),
        "records per broker CPU s": get("cpu", "records_per_broker_cpu_s"),
        "broker peak RSS MiB": (get("cpu", "broker_peak_rss_bytes") or 0) / 2**20 or None,
    }


def figures(result, broker):
    run = next(r["run"] for r in result["runs"] if r["name"] == broker)
    out = loadgen(run)
    tools = result.get("kafka_tools", {}).get(broker)
    if tools:
        producer = tools["producer"]["summary"] or {}
        consumer = tools["consumer"]["summary"] or {}
        out["kafka-producer-perf-test records/s"] = producer.get("records_per_s")
        out["kafka-producer-perf-test p99 ms"] = producer.get("p99_ms")
        out["kafka-consumer-perf-test records/s"] = consumer.get("records_per_s")
    return out


def fmt(value):
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 0.1:
        return f"{value:.2f}"
    return f"{value:.2g}"


def main():
    results = [json.load(open(path)) for path in sys.argv[1:]]
    ringlog = [figures(r, "ringlog") for r in results]
    kafka = [figures(r, "kafka") for r in results]
    print(f"| figure (median of {len(results)}; each run) | ringlog | Apache Kafka | ringlog/Kafka |")
    print("|---|---|---|---|")
    for name in ringlog[0]:
        ours = [f[name] for f in ringlog]
        theirs = [f[name] for f in kafka]
        if any(v is None for v in ours + theirs):
            continue
        ratios = [a / b for a, b in zip(ours, theirs) if b]
        each = lambda values: ", ".join(fmt(v) for v in values)
        print(
            f"| {name} | {fmt(statistics.median(ours))} ({each(ours)}) | "
            f"{fmt(statistics.median(theirs))} ({each(theirs)}) | "
            f"{fmt(statistics.median(ratios))} ({each(ratios)}) |"
        )


if __name__ == "__main__":
    main()
