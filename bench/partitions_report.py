"""The report of bench/partitions.sh: reads what the script left in its scratch directory
(notes.tsv, samples.jsonl, the PartitionBench and `chime bench` JSON lines) and writes
<out>.txt (a table, goal beside measured) and <out>.json (every figure).

    python3 bench/partitions_report.py WORK OUT HOT_MESSAGES HOT_RATE HOT_SECONDS TRICKLE_SECONDS PER_PARTITION GROUP_TOPICS
"""
import json
import os
import sys

work, out = sys.argv[1], sys.argv[2]
hot_messages, hot_rate, hot_seconds, trickle_seconds, per_partition, group_topics = map(int, sys.argv[3:9])

# Goals of issue 13, for 10,000 partitions (2,500 topics × 4).
GOAL_PARTITIONS = 10_000
GOAL_RSS_MIB = 512
GOAL_THREADS = 64
GOAL_FDS = 1024
GOAL_RESTART_S = 10
GOAL_LATENESS_P99_MS = 5


def read_json(name):
    path = os.path.join(work, name)
    if not os.path.exists(path):
        return None
    lines = [l for l in open(path).read().splitlines() if l.strip().startswith("{")]
    return json.loads(lines[-1]) if lines else None


def read_cases(name):
    path = os.path.join(work, name)
    cases = {}
    if os.path.exists(path):
        for line in open(path):
            if line.strip().startswith("{"):
                c = json.loads(line)
                cases[c["case"]] = c
    return cases


def read_text(name):
    path = os.path.join(work, name)
    return open(path).read().strip() if os.path.exists(path) else ""


notes = {}
for line in open(os.path.join(work, "notes.tsv")):
    key, value = line.rstrip("\n").split("\t", 1)
    notes[key] = json.loads(value)

samples = []
if os.path.exists(os.path.join(work, "samples.jsonl")):
    for line in open(os.path.join(work, "samples.jsonl")):
        try:
            samples.append(json.loads(line))
        except ValueError:
            pass  # a sample cut short by the process going away


def sample(label):
    found = [s for s in samples if s["label"] == label and not s.get("gone")]
    return found[-1] if found else None


def peak(label, field):
    values = [s[field] for s in samples if s["label"] == label and not s.get("gone")]
    return max(values) if values else None


create = read_json("create.json")
trickle = read_json("trickle.json")
count = read_json("count.json")
n1024 = {
    "create": read_json("n1024-create.json"),
    "trickle": read_json("n1024-trickle.json"),
    "count": read_json("n1024-count.json"),
}
hot_empty = read_cases("hot-empty.jsonl")
hot_loaded = read_cases("hot-loaded.jsonl")
partitions = create["partitions"] if create else 0
topics_requested = notes["topicsRequested"]
per_topic = notes["partitionsPerTopic"]

rows = []  # (what, goal, measured, verdict)


def mib(kib):
    return None if kib is None else kib / 1024


def fmt(v, unit="", digits=0):
    if v is None:
        return "—"
    if isinstance(v, float) or digits:
        return f"{v:,.{digits}f}{unit}"
    return f"{v:,}{unit}"


def verdict(ok):
    return "—" if ok is None else ("met" if ok else "NOT met")


def at_most(v, goal):
    return None if v is None else v <= goal


scale = f"at {partitions:,} partitions" if partitions != GOAL_PARTITIONS else ""
rows.append(("partitions created", f"{GOAL_PARTITIONS:,}", f"{partitions:,} of {topics_requested * per_topic:,}",
             verdict(partitions >= GOAL_PARTITIONS) if topics_requested * per_topic >= GOAL_PARTITIONS else "(smaller run)"))
if create:
    rate = create["created"] / create["seconds"] if create["seconds"] > 0 else 0
    rows.append(("topic creation", "not minutes", f"{create['seconds']:.1f} s ({rate:,.0f} topics/s)", verdict(create["seconds"] < 60)))
    if create.get("error"):
        rows.append(("creation stopped at", "", f"topic {create['failedAtTopic']}: {create['error']}", ""))
if notes.get("create.serverDied"):
    rows.append(("server died during creation", "", notes["create.serverDied"], "NOT met"))

idle = sample("idle-after-create")
start = sample("main-start")
hwm_trickle = peak("trickle", "hwmKiB") or (idle or {}).get("hwmKiB")
for label, s in (("idle after creation", idle),):
    rows.append((f"RSS, {label}", f"≤ {GOAL_RSS_MIB} MiB", fmt(mib(s and s["rssKiB"]), " MiB", 1), verdict(at_most(mib(s and s["rssKiB"]), GOAL_RSS_MIB))))
rows.append(("RSS peak (VmHWM) to the end of the trickle", f"≤ {GOAL_RSS_MIB} MiB", fmt(mib(hwm_trickle), " MiB", 1), verdict(at_most(mib(hwm_trickle), GOAL_RSS_MIB))))
rows.append(("threads, idle after creation", f"≤ {GOAL_THREADS}", fmt(idle and idle["threads"]), verdict(at_most(idle and idle["threads"], GOAL_THREADS))))
rows.append(("threads, most during the trickle", f"≤ {GOAL_THREADS}", fmt(peak("trickle", "threads")), verdict(at_most(peak("trickle", "threads"), GOAL_THREADS))))
rows.append(("open files, idle after creation", f"≤ {GOAL_FDS:,}", fmt(idle and idle["fds"]), verdict(at_most(idle and idle["fds"], GOAL_FDS))))
rows.append(("open files, most during the trickle", f"≤ {GOAL_FDS:,}", fmt(peak("trickle", "fds")), verdict(at_most(peak("trickle", "fds"), GOAL_FDS))))
restart_s = notes.get("restart.startSeconds")
rows.append(("restart: launch → serving", f"≤ {GOAL_RESTART_S} s", fmt(restart_s, " s", 2) if restart_s is not None else notes.get("restart.startError", "—"), verdict(at_most(restart_s, GOAL_RESTART_S))))
if notes.get("main.stopSeconds") is not None:
    rows.append(("stop: SIGTERM → exit", "", f"{notes['main.stopSeconds']:.2f} s (status {notes.get('main.exitStatus')})", ""))
if notes.get("restart.stopSeconds") is not None:
    rows.append(("stop after the restart: SIGTERM → exit", "", f"{notes['restart.stopSeconds']:.2f} s (status {notes.get('restart.exitStatus')})", ""))
if count:
    rows.append(("topics listed after restart", f"{topics_requested:,}", f"{count.get('topics', 0):,} ({count.get('partitions', 0):,} partitions)" if "topics" in count else count.get("error", "—"), verdict(count.get("partitions") == partitions)))
after = sample("idle-after-restart")
if after:
    rows.append(("after restart, idle: RSS / threads / files", "", f"{mib(after['rssKiB']):,.1f} MiB / {after['threads']} / {after['fds']:,}", ""))

# The hot topic beside them: the same cases on an empty broker first.
def hot_row(case, field, label, unit, goal, better_low):
    e = hot_empty.get(case, {}).get(field)
    l = hot_loaded.get(case, {}).get(field)
    ratio = f" (× {l / e:.2f})" if e and l is not None else ""
    measured = f"{fmt(e, unit)} → {fmt(l, unit)}{ratio}"
    ok = None
    if e is not None and l is not None:
        # "Unchanged" on a shared 2-core VM: within 20 % (or 1 ms for lateness) of the empty broker's.
        ok = (l <= e * 1.2 + 1) if better_low else (l >= e * 0.8)
        if goal is not None:
            ok = ok and l <= goal
    rows.append((label, "unchanged" + (f", ≤ {goal}{unit}" if goal is not None else ""), measured, verdict(ok)))


hot_row("publish-1", "messagesPerSecond", "hot publish-1 msg/s, empty → loaded", "", None, False)
hot_row("publish-4", "messagesPerSecond", "hot publish-4 msg/s, empty → loaded", "", None, False)
hot_row("lateness", "receivedP99Ms", "hot lateness p99, empty → loaded", " ms", GOAL_LATENESS_P99_MS, True)
hot_row("lateness", "receivedMaxMs", "hot lateness max, empty → loaded", " ms", None, True)
for name in ("hot-empty", "hot-loaded"):
    if notes.get(f"{name}.error"):
        rows.append((f"{name} failed", "", notes[f"{name}.error"], "NOT met"))

if trickle:
    rows.append(("trickle: published / failed", "", f"{trickle['published']:,} / {trickle['failed']:,} of {trickle['messages']:,} in {trickle['publishSeconds']:.1f} s", verdict(trickle["failed"] == 0)))
    rows.append(("trickle: one publish p50 / p99", "", f"{trickle['publishP50Ms']:.1f} / {trickle['publishP99Ms']:.1f} ms", ""))
    rows.append(("trickle: group consumed / expected", "", f"{trickle['consumed']:,} / {trickle['groupExpected']:,}", verdict(trickle["consumed"] >= trickle["groupExpected"])))
    rows.append(("trickle: scheduled lateness p50 / p99 / max", "", f"{trickle['scheduledLateP50Ms']:.0f} / {trickle['scheduledLateP99Ms']:.0f} / {trickle['scheduledLateMaxMs']} ms, {trickle['early']} early", ""))
    if trickle.get("firstError"):
        rows.append(("trickle: first error", "", trickle["firstError"][:200], ""))

# What one partition costs: idle after creation against the fresh broker.
per = {}
if idle and start and partitions:
    per = {
        "rssKiB": (idle["rssKiB"] - start["rssKiB"]) / partitions,
        "threads": (idle["threads"] - start["threads"]) / partitions,
        "fds": (idle["fds"] - start["fds"]) / partitions,
    }

# ulimit -n 1024.
n1024_rows = []
if notes.get("n1024.startError"):
    n1024_rows.append(("start", notes["n1024.startError"]))
c = n1024["create"]
if c:
    n1024_rows.append(("partitions created", f"{c['partitions']:,} of {topics_requested * per_topic:,} in {c['seconds']:.1f} s"))
    if c.get("error"):
        n1024_rows.append(("creation stopped at", f"topic {c['failedAtTopic']}: {c['error']}"))
if notes.get("n1024-create.serverDied"):
    n1024_rows.append(("server died during creation", notes["n1024-create.serverDied"]))
s = sample("n1024-idle-after-create")
if s:
    n1024_rows.append(("idle after creation: RSS / threads / files", f"{mib(s['rssKiB']):,.1f} MiB / {s['threads']} / {s['fds']:,}"))
t = n1024["trickle"]
if t:
    n1024_rows.append(("trickle (5 s): published / failed", f"{t['published']:,} / {t['failed']:,}" + (f" — {t['firstError'][:200]}" if t.get("firstError") else "")))
    pk = peak("n1024-trickle", "fds")
    if pk is not None:
        n1024_rows.append(("open files, most during the trickle", f"{pk:,}"))
if notes.get("n1024-restart.startSeconds") is not None:
    n1024_rows.append(("restart: launch → serving", f"{notes['n1024-restart.startSeconds']:.2f} s"))
elif notes.get("n1024-restart.startError"):
    n1024_rows.append(("restart", notes["n1024-restart.startError"]))
cnt = n1024["count"]
if cnt:
    n1024_rows.append(("topics listed after restart", f"{cnt.get('topics', 0):,}" if "topics" in cnt else cnt.get("error", "—")))
errors_1024 = read_text("n1024-errors.txt")
errors_main = read_text("main-errors.txt")

lines = [read_text("header.txt")]
lines.append(f"open-file limit of the shell: soft {notes['ulimitSoft']}, hard {notes['ulimitHard']}")
lines.append(
    f"{topics_requested:,} topics × {per_topic} partitions; trickle {per_partition} messages per partition over {trickle_seconds} s "
    f"(half due 2–5 s ahead), one group on {group_topics} topics; hot topic: chime bench publish ({hot_messages:,} messages) "
    f"and lateness ({hot_rate:,}/s for {hot_seconds} s), on an empty broker, then beside the trickle")
if scale:
    lines.append(f"(goals are for {GOAL_PARTITIONS:,} partitions; this run has {partitions:,}: see the per-partition costs)")
lines.append("")
# Long messages (errors) are cut in the table; the JSON has them whole.
table = [(a, b, c if len(c) <= 110 else c[:107] + "…", d) for a, b, c, d in rows]
width = [max(len(str(r[i])) for r in table + [("what", "goal", "measured", "verdict")]) for i in range(4)]
header = ("what", "goal", "measured", "verdict")
lines.append("  ".join(h.ljust(w) for h, w in zip(header, width)))
lines.append("  ".join("-" * w for w in width))
for r in table:
    lines.append("  ".join(str(v).ljust(w) for v, w in zip(r, width)).rstrip())
lines.append("")
if per:
    lines.append(f"per partition (idle after creation − fresh broker, ÷ {partitions:,}): "
                 f"RSS {per['rssKiB']:.1f} KiB, threads {per['threads']:.4f}, open files {per['fds']:.2f}")
    lines.append(f"  at {GOAL_PARTITIONS:,} partitions that is RSS {start['rssKiB'] / 1024 + per['rssKiB'] * GOAL_PARTITIONS / 1024:,.0f} MiB, "
                 f"threads {start['threads'] + per['threads'] * GOAL_PARTITIONS:,.0f}, open files {start['fds'] + per['fds'] * GOAL_PARTITIONS:,.0f} "
                 f"(fresh broker: {start['rssKiB'] / 1024:.1f} MiB, {start['threads']} threads, {start['fds']} files)")
threads_main = read_text("threads-idle-after-create.txt")
if threads_main:
    lines.append("server threads by name, idle after creation (count, name):")
    lines += ["  " + l.strip() for l in threads_main.splitlines()]
if errors_main:
    lines.append("server log, first errors:")
    lines += ["  " + l for l in errors_main.splitlines()]
if n1024_rows:
    lines.append("")
    lines.append("under ulimit -n 1024:")
    w = max(len(k) for k, _ in n1024_rows)
    lines += [f"  {k.ljust(w)}  {v if len(v) <= 160 else v[:157] + '…'}" for k, v in n1024_rows]
    if errors_1024:
        lines.append("  server log, first errors:")
        lines += ["    " + l for l in errors_1024.splitlines()]
tails = {name: read_text(f"{name}-tail.txt") for name in ("main", "restart", "n1024", "n1024-restart")}
died = [k for k in ("create.serverDied", "trickle.serverDied", "n1024-create.serverDied") if notes.get(k)]
if died:
    lines.append("")
    lines.append("servers that died: " + ", ".join(k.split(".")[0] for k in died) + "; the end of their logs:")
    for name in ("main", "n1024"):
        if tails[name]:
            lines.append(f"  {name}:")
            lines += ["    " + l for l in tails[name].splitlines()]
text = "\n".join(lines) + "\n"
print(text)
open(out + ".txt", "w").write(text)

report = {
    "goals": {"partitions": GOAL_PARTITIONS, "rssMiB": GOAL_RSS_MIB, "threads": GOAL_THREADS, "openFiles": GOAL_FDS,
              "restartSeconds": GOAL_RESTART_S, "latenessP99Ms": GOAL_LATENESS_P99_MS},
    "parameters": {"topics": topics_requested, "partitionsPerTopic": per_topic, "trickleSeconds": trickle_seconds,
                   "perPartition": per_partition, "groupTopics": group_topics, "hotMessages": hot_messages,
                   "hotRate": hot_rate, "hotSeconds": hot_seconds},
    "notes": notes,
    "rows": [{"what": r[0], "goal": r[1], "measured": r[2], "verdict": r[3]} for r in rows],
    "perPartition": per,
    "create": create, "trickle": trickle, "countAfterRestart": count,
    "hotEmpty": hot_empty, "hotLoaded": hot_loaded,
    "nofile1024": n1024, "samples": samples,
    "serverErrors": {"main": errors_main, "nofile1024": errors_1024},
    "serverLogTails": tails,
    "threadNames": {"idleAfterCreate": threads_main, "nofile1024": read_text("threads-n1024-idle-after-create.txt")},
}
json.dump(report, open(out + ".json", "w"), indent=1, sort_keys=True)
