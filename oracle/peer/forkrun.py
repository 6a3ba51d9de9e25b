"""Running one risky PyTorch call in a forked child, so a crash, hang or memory
exhaustion of PyTorch is a result to report instead of the end of the harness."""
import json
import os
import resource
import signal


def in_child(fn, timeout=None, memory_mb=None):
    """fn() in a forked child. Returns ("ok", value) | ("exception", text) |
    ("memory", text) | ("crash", why) | ("hang", None). `value` must be JSON-able."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        if memory_mb:
            resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
        try:
            data = json.dumps(["ok", fn()])
        except MemoryError:
            data = json.dumps(["memory", "MemoryError"])
        except BaseException as e:  # noqa: BLE001 - report anything to the parent
            lines = str(e).strip().splitlines()
            data = json.dumps(["exception", "%s: %s" % (type(e).__name__, lines[-1] if lines else "")])
        with os.fdopen(w, "wb") as f:
            f.write(data.encode())
        os._exit(0)
    os.close(w)

    def on_alarm(signum, frame):
        raise TimeoutError

    if timeout:
        signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(int(timeout))
    try:
        with os.fdopen(r, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        if timeout:
            signal.alarm(0)
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return ("hang", None)
    if os.WIFSIGNALED(status):
        return ("crash", "killed by signal %d" % os.WTERMSIG(status))
    if not data:
        return ("crash", "exit status %d" % os.WEXITSTATUS(status))
    return tuple(json.loads(data))
