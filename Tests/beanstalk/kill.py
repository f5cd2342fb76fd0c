"""SIGKILL in the middle of a put/reserve/delete/bury workload on `chime beanstalkd -b DIR`.

Usage: python3 kill.py CHIME_BINARY [SECONDS]

First 500 jobs are put in the tube "later" with an hour's delay, and the server is left
idle long enough to write its snapshot. Then producers put jobs (some delayed) and workers
reserve them and delete or bury them, and a sweeper deletes or kicks the "later" jobs,
over their own connections, recording every answer they received. After SECONDS the
server is killed with SIGKILL and started again on the same directory. Then:
  - every job whose INSERTED was received and whose DELETED was not is there, with its
    body (peek), and every job whose BURIED was received is still buried (a job whose
    delete or bury was sent and not answered may be either way);
  - every job whose DELETED was received is gone, and every "later" job whose KICKED was
    received is ready;
  - ids keep increasing after the restart.
Prints a summary line and exits 1 on any violation. Run by BeanstalkKillTests.
"""

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

from beanstalk_wire import Conn, free_port, wait_for


def start(chime, port, data):
    proc = subprocess.Popen([chime, "beanstalkd", "-l", "127.0.0.1", "-p", str(port), "-b", data],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(port, proc, "chime beanstalkd")
    return proc


inserted = {}  # id -> body
deleted = set()
# Deletes and buries sent whose answer never came: either outcome is right.
unanswered = set()
buried = set()
kicked = set()
lock = threading.Lock()
stop = threading.Event()


def producer(port, index):
    try:
        c = Conn(port)
        n = 0
        while not stop.is_set():
            body = f"job-{index}-{n}".encode()
            delay = 1 if n % 5 == 0 else 0
            words, _ = c.call(b"put %d %d 60 %d\r\n%s\r\n" % (n % 3, delay, len(body), body))
            if words[0] != b"INSERTED":
                print(f"put answered {words}")
                return
            with lock:
                inserted[int(words[1])] = body
            n += 1
    except (OSError, EOFError):
        pass


def worker(port):
    try:
        c = Conn(port)
        n = 0
        while not stop.is_set():
            words, body = c.call(b"reserve-with-timeout 1\r\n")
            if words[0] != b"RESERVED":
                continue
            jid = int(words[1])
            with lock:
                unanswered.add(jid)
            if n % 4 == 0:
                words, _ = c.call(b"bury %d 5\r\n" % jid)
                if words[0] == b"BURIED":
                    with lock:
                        buried.add(jid)
                        unanswered.discard(jid)
            else:
                words, _ = c.call(b"delete %d\r\n" % jid)
                if words[0] == b"DELETED":
                    with lock:
                        deleted.add(jid)
                        unanswered.discard(jid)
            n += 1
    except (OSError, EOFError):
        pass


def sweeper(port, later):
    try:
        c = Conn(port)
        for i, jid in enumerate(later):
            if stop.is_set():
                return
            if i % 3 == 2:
                continue
            with lock:
                unanswered.add(jid)
            words, _ = c.call(b"delete %d\r\n" % jid if i % 3 == 0 else b"kick-job %d\r\n" % jid)
            with lock:
                if words[0] == b"DELETED":
                    deleted.add(jid)
                elif words[0] == b"KICKED":
                    kicked.add(jid)
                unanswered.discard(jid)
            time.sleep(0.002)
    except (OSError, EOFError):
        pass


def main():
    chime = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3
    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        proc = start(chime, port, data)
        c = Conn(port)
        c.call(b"use later\r\n")
        later = []
        for n in range(500):
            body = b"later-%d" % n
            words, _ = c.call(b"put 0 3600 60 %d\r\n%s\r\n" % (len(body), body))
            inserted[int(words[1])] = body
            later.append(int(words[1]))
        time.sleep(2.5)  # idle: the server writes its snapshot
        if not any("beanstalk.snapshot" in files for _, _, files in os.walk(data)):
            print("no beanstalk.snapshot after 2.5 s idle")
            sys.exit(1)
        threads = [threading.Thread(target=producer, args=(port, i)) for i in range(4)]
        threads.append(threading.Thread(target=sweeper, args=(port, later)))
        threads += [threading.Thread(target=worker, args=(port,)) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(seconds)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        stop.set()
        for t in threads:
            t.join(timeout=60)
        with lock:
            snapshot = (dict(inserted), set(deleted), set(buried), set(unanswered), set(kicked))
        ins, dele, bur, open_, kick = snapshot
        proc = start(chime, port, data)
        try:
            c = Conn(port)
            problems = []
            for jid, body in sorted(ins.items()):
                if jid in open_:
                    continue
                words, got = c.call(b"peek %d\r\n" % jid)
                if jid in dele:
                    if words[0] != b"NOT_FOUND":
                        problems.append(f"job {jid}: DELETED was received, yet it is back")
                elif words[0] != b"FOUND" or got != body:
                    problems.append(f"job {jid}: INSERTED was received, now {words[0].decode()}")
            for jid in sorted(kick - open_):
                words, got = c.call(b"stats-job %d\r\n" % jid)
                if words[0] != b"OK" or b"state: ready" not in got:
                    problems.append(f"job {jid}: KICKED was received, now {got!r}")
            for jid in sorted(bur - dele):
                words, got = c.call(b"stats-job %d\r\n" % jid)
                if words[0] != b"OK" or b"state: buried" not in got:
                    problems.append(f"job {jid}: BURIED was received, now {got!r}")
            words, _ = c.call(b"put 0 0 60 5\r\nafter\r\n")
            newest = max(ins) if ins else 0
            if words[0] != b"INSERTED" or int(words[1]) <= newest:
                problems.append(f"a put after the restart got {words}, not an id above {newest}")
            words, stats = c.call(b"stats\r\n")
            print(f"kill.py: {len(ins)} jobs inserted, {len(dele)} deleted, {len(bur)} buried, {len(kick)} kicked before SIGKILL; "
                  f"{len(problems)} problems after the restart")
            for p in problems[:20]:
                print("  " + p)
            if len(ins) < 100 or len(dele) < 10 or len(kick) < 10:
                print("too little work before the kill to say anything")
                sys.exit(1)
            sys.exit(1 if problems else 0)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
