"""chime beanstalkd beside Debian's beanstalkd: the same conversations, the same answers.

Usage: python conformance.py CHIME_BINARY

Starts `chime beanstalkd` and `beanstalkd` (both with -z 4096, on free ports of
127.0.0.1), then:
  1. raw conversations over sockets, covering every command and every error reply,
     compared reply by reply (stats values that belong to the process, such as its pid,
     are compared by key only);
  2. a scenario through greenstalk (a beanstalkd client from PyPI): tubes, priorities,
     delays, TTR expiry, bury and kick, stats; its observations are compared;
  3. drain mode: SIGUSR1 to each, then a put is answered DRAINING.
Prints every difference and exits 1 if there is one. Run by BeanstalkConformanceTests.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time

import greenstalk

from beanstalk_wire import Conn, free_port, wait_for

MAX_JOB = 4096
# Stats values that are the process's own, not the protocol's.
VOLATILE = {
    "pid", "version", "rusage-utime", "rusage-stime", "uptime", "binlog-oldest-index", "binlog-current-index",
    "binlog-records-migrated", "binlog-records-written", "binlog-max-size", "id", "hostname", "os", "platform",
    "age", "time-left", "pause-time-left", "file",
}


def unblock_signals():
    """The test runner may block signals in its threads, and a child inherits the mask:
    SIGUSR1 must reach the servers."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)


def normalize(reply):
    line, body = reply
    if body is None or not line.startswith("OK"):
        return reply
    text = body.decode()
    if not text.startswith("---\n"):
        return reply
    lines = []
    for item in text[4:].splitlines():
        key, _, value = item.partition(": ")
        if item.startswith("- "):
            lines.append(item)
        elif key in VOLATILE:
            lines.append(key + ": *")
        else:
            lines.append(item)
    return ("OK", "\n".join(lines))


# Each conversation: steps of (connection index, bytes to send, replies to read), or
# ("sleep", seconds). Replies are compared in order.
J = b"job-body"
CONVERSATIONS = {
    "put, reserve by priority then id, delete": [
        (0, b"put 10 0 60 1\r\na\r\n", 1), (0, b"put 5 0 60 1\r\nb\r\n", 1), (0, b"put 5 0 60 1\r\nc\r\n", 1),
        (0, b"put 4294967295 0 60 1\r\nd\r\n", 1), (0, b"put 0 0 60 0\r\n\r\n", 1),
        (0, b"reserve\r\n", 1), (0, b"reserve-with-timeout 0\r\n", 1), (0, b"reserve-with-timeout 0\r\n", 1),
        (0, b"reserve-with-timeout 0\r\n", 1), (0, b"reserve-with-timeout 0\r\n", 1), (0, b"reserve-with-timeout 0\r\n", 1),
        (0, b"stats-tube default\r\n", 1),
        (0, b"delete 1\r\ndelete 2\r\ndelete 3\r\ndelete 4\r\ndelete 5\r\ndelete 5\r\n", 6),
    ],
    "tubes: use, watch, ignore, lists, reserve across watched tubes": [
        (0, b"list-tube-used\r\nuse a-b+c/d;e.f$g_h(i)\r\nlist-tube-used\r\nlist-tubes\r\n", 4),
        (0, b"put 7 0 60 2\r\nt1\r\nuse other\r\nput 3 0 60 2\r\nt2\r\n", 3),
        (1, b"watch a-b+c/d;e.f$g_h(i)\r\nwatch other\r\nwatch other\r\nlist-tubes-watched\r\n", 4),
        (1, b"ignore default\r\nignore nosuch\r\nreserve-with-timeout 0\r\nreserve-with-timeout 0\r\n", 4),
        (1, b"ignore other\r\nignore a-b+c/d;e.f$g_h(i)\r\nlist-tubes-watched\r\n", 3),
        (1, b"stats-tube other\r\nstats-tube a-b+c/d;e.f$g_h(i)\r\nstats-tube nosuch\r\n", 3),
        (0, b"use default\r\n", 1),
        (1, b"release 6 1 0\r\nrelease 7 1 0\r\n", 2),
        (1, b"watch other\r\nwatch a-b+c/d;e.f$g_h(i)\r\nreserve\r\nreserve\r\n", 4),
        (1, b"delete 6\r\ndelete 7\r\n", 2),
        (1, b"quit\r\n", 0),
        (0, b"list-tubes\r\n", 1),
    ],
    "release with priority and delay, peek-delayed, kick, kick-job": [
        (0, b"put 100 0 60 8\r\n" + J + b"\r\n", 1), (0, b"reserve\r\n", 1),
        (0, b"release 8 50 1\r\nstats-job 8\r\npeek-delayed\r\npeek-ready\r\n", 4),
        (0, b"kick 1\r\nstats-job 8\r\npeek-ready\r\n", 3),
        (0, b"reserve\r\nrelease 8 60 1\r\nkick-job 8\r\nkick-job 8\r\nstats-job 8\r\n", 5),
        (0, b"reserve\r\nrelease 8 60 1\r\n", 2), ("sleep", 1.3), (0, b"stats-job 8\r\nreserve-with-timeout 0\r\ndelete 8\r\n", 3),
    ],
    "bury, peek-buried, kick, reserve-job": [
        (0, b"put 1 0 60 1\r\nx\r\nput 2 0 60 1\r\ny\r\n", 2),
        (0, b"reserve\r\nbury 9 7\r\nreserve\r\nbury 10 8\r\npeek-buried\r\nstats-tube default\r\n", 6),
        (0, b"kick 1\r\npeek-buried\r\npeek-ready\r\nkick 5\r\nkick 5\r\n", 5),
        (0, b"reserve\r\nbury 9 1\r\nreserve-job 9\r\nstats-job 9\r\nbury 9 1\r\nkick-job 9\r\nstats-job 9\r\n", 7),
        (0, b"reserve-job 9\r\nreserve-job 9\r\nreserve-job 10\r\ndelete 9\r\ndelete 10\r\n", 5),
    ],
    "touch, TTR running out, DEADLINE_SOON": [
        (0, b"put 0 0 1 1\r\nz\r\n", 1), (0, b"reserve\r\n", 1), (0, b"reserve\r\n", 1),
        (0, b"touch 12\r\n", 1), (1, b"touch 12\r\n", 1),
        # z is job 11: 12 is a job not yet made. The second connection deletes z once its
        # TTR ran out, so that it cannot time out again and race w's DEADLINE_SOON.
        ("sleep", 1.4), (0, b"stats-job 12\r\n", 1), (1, b"reserve-with-timeout 0\r\n", 1), (1, b"delete 11\r\n", 1),
        (0, b"put 0 0 2 1\r\nw\r\n", 1), (0, b"reserve\r\n", 1), (0, b"reserve-with-timeout 3\r\n", 1),
        (0, b"delete 12\r\n", 1),
    ],
    "pause-tube, a waiting reserve answered by a put and by a timeout": [
        (0, b"pause-tube default 1\r\npause-tube nosuch 1\r\nput 0 0 60 1\r\np\r\n", 3),
        (1, b"reserve-with-timeout 0\r\n", 1), (1, b"stats-tube default\r\n", 1),
        ("sleep", 1.3), (1, b"reserve-with-timeout 0\r\ndelete 14\r\n", 2),
        (1, b"reserve-with-timeout 5\r\n", 0), ("sleep", 0.3), (0, b"put 3 0 60 1\r\nq\r\n", 1), (1, b"", 1),
        (1, b"delete 15\r\nreserve-with-timeout 1\r\n", 2),
    ],
    "NOT_FOUND for every command that names a job": [
        (0, b"delete 999\r\nrelease 999 0 0\r\nbury 999 0\r\ntouch 999\r\npeek 999\r\nkick-job 999\r\n", 6),
        (0, b"stats-job 999\r\nreserve-job 999\r\npeek 0\r\npeek-ready\r\npeek-delayed\r\npeek-buried\r\n", 6),
        (0, b"peek 18446744073709551615\r\n", 1),
    ],
    "bad lines": [
        (0, b"nonsense\r\n\r\ndelete\r\nreserves\r\nstats now\r\nput 1 2 3\r\n", 6),
        (0, b"put -1 0 60 1\r\nput 1 0 60 99999999999999999999\r\nput 4294967296 0 60 1\r\n", 3),
        (0, b"use -starts-with-hyphen\r\nuse bad name\r\nwatch " + b"n" * 201 + b"\r\n", 3),
        (0, b"kick 1 2\r\nput 1  0 60 1\r\nx\r\nlist-tube-used\n\r\n", 3),
        (0, b"put 0 0 60 3\r\nabcde\r\n", 2), (0, b"put 0 0 60 3\r\nab\r\nlist-tube-used\r\n", 2),
        (0, b"put 0 0 60 " + str(MAX_JOB + 1).encode() + b"\r\n" + b"x" * (MAX_JOB + 1) + b"\r\nlist-tube-used\r\n", 2),
        (0, b"put 0 0 60 3\nabc\r\nlist-tube-used\r\n", 2),
        (0, b"a" * 300 + b"\r\nlist-tube-used\r\n", 2),
        (0, b"delete 16\r\ndelete 17\r\n", 2),
    ],
    "stats": [
        (0, b"stats\r\n", 1),
    ],
}


def converse(port, steps):
    conns = {}
    out = []
    for step in steps:
        if step[0] == "sleep":
            time.sleep(step[1])
            continue
        index, data, replies = step
        if index not in conns:
            conns[index] = Conn(port)
        c = conns[index]
        if data:
            c.send(data)
        for _ in range(replies):
            out.append((index, normalize(c.reply())))
        if data == b"quit\r\n":
            out.append((index, ("closed", c.closed())))
    for c in conns.values():
        c.close()
    return out


def scenario(port):
    """What a greenstalk user sees, in order."""
    seen = []
    c = greenstalk.Client(("127.0.0.1", port), use="emails", watch=["emails", "sms"])
    seen.append(("put", [c.put(body, priority=p) for body, p in [("low", 2000), ("high", 1), ("mid", 500)]]))
    seen.append(("put delayed", c.put("later", delay=1)))
    order = []
    for _ in range(3):
        j = c.reserve(timeout=0)
        order.append(j.body)
        c.delete(j)
    seen.append(("priority order", order))
    try:
        c.reserve(timeout=0)
        seen.append(("delayed reserved early", True))
    except greenstalk.TimedOutError:
        seen.append(("delayed not ready", True))
    j = c.reserve(timeout=3)
    seen.append(("delayed after its delay", j.body))
    c.bury(j, priority=7)
    seen.append(("buried", c.stats_job(j)["state"], c.stats_tube("emails")["current-jobs-buried"]))
    seen.append(("peek buried", c.peek_buried().body))
    seen.append(("kicked", c.kick(10)))
    j = c.reserve(timeout=0)
    seen.append(("kicked job", j.body, c.stats_job(j)["kicks"], c.stats_job(j)["buries"]))
    c.release(j, priority=9, delay=0)
    j = c.reserve(timeout=0)
    seen.append(("released", j.body, c.stats_job(j)["releases"], c.stats_job(j)["pri"]))
    c.delete(j)
    c.use("sms")
    jid = c.put("ttr", ttr=1)
    j = c.reserve(timeout=0)
    try:
        c.reserve(timeout=5)
        seen.append(("no DEADLINE_SOON", True))
    except greenstalk.DeadlineSoonError:
        seen.append(("DEADLINE_SOON", True))
    time.sleep(1.6)
    seen.append(("TTR ran out", c.stats_job(jid)["state"], c.stats_job(jid)["timeouts"]))
    j = c.reserve(timeout=0)
    c.touch(j)
    seen.append(("touched", c.stats_job(j)["state"]))
    c.delete(j)
    try:
        c.delete(j)
    except greenstalk.NotFoundError:
        seen.append(("second delete NOT_FOUND", True))
    seen.append(("tubes", sorted(c.tubes()), c.using(), sorted(c.watching())))
    s = c.stats()
    seen.append(("stats", {k: s[k] for k in ("current-jobs-ready", "current-jobs-buried", "cmd-put", "cmd-delete", "cmd-bury", "cmd-kick", "cmd-release", "job-timeouts", "total-jobs", "current-tubes")}))
    seen.append(("watch count", c.watch("extra"), c.ignore("extra")))
    c.close()
    return seen


def drain(port, pid):
    os.kill(pid, signal.SIGUSR1)
    time.sleep(0.5)
    c = Conn(port)
    c.send(b"put 0 0 60 1\r\nx\r\nlist-tube-used\r\n")
    replies = [c.reply(), c.reply()]
    c.send(b"stats\r\n")
    draining = [l for l in c.reply()[1].decode().splitlines() if l.startswith("draining:")]
    c.close()
    return replies, draining


def main():
    chime = sys.argv[1]
    with tempfile.TemporaryDirectory() as data:
        cport, bport = free_port(), free_port()
        chime_proc = subprocess.Popen([chime, "beanstalkd", "-l", "127.0.0.1", "-p", str(cport), "-z", str(MAX_JOB), "-b", data],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=unblock_signals)
        bean_proc = subprocess.Popen(["beanstalkd", "-l", "127.0.0.1", "-p", str(bport), "-z", str(MAX_JOB)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=unblock_signals)
        try:
            wait_for(cport, chime_proc, "chime beanstalkd")
            wait_for(bport, bean_proc, "beanstalkd")
            differences = 0
            replies = 0
            for name, steps in CONVERSATIONS.items():
                ours, theirs = converse(cport, steps), converse(bport, steps)
                replies += len(theirs)
                if ours != theirs:
                    differences += 1
                    print(f"DIFFERENT: {name}")
                    for i in range(max(len(ours), len(theirs))):
                        a = ours[i] if i < len(ours) else None
                        b = theirs[i] if i < len(theirs) else None
                        if a != b:
                            print(f"  reply {i}: chime {a!r}\n           beanstalkd {b!r}")
                else:
                    print(f"same: {name} ({len(theirs)} replies)")
            ours, theirs = scenario(cport), scenario(bport)
            if ours != theirs:
                differences += 1
                print("DIFFERENT: greenstalk scenario")
                for a, b in zip(ours, theirs):
                    if a != b:
                        print(f"  chime {a!r}\n  beanstalkd {b!r}")
            else:
                print(f"same: greenstalk scenario ({len(theirs)} observations)")
            ours, theirs = drain(cport, chime_proc.pid), drain(bport, bean_proc.pid)
            if ours != theirs:
                differences += 1
                print(f"DIFFERENT: drain mode: chime {ours!r}, beanstalkd {theirs!r}")
            else:
                print(f"same: drain mode {theirs!r}")
            print(f"{len(CONVERSATIONS)} conversations ({replies} replies), a greenstalk scenario and drain mode: {differences} different")
            sys.exit(1 if differences else 0)
        finally:
            for p in (chime_proc, bean_proc):
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()


if __name__ == "__main__":
    main()
