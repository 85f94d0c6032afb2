#!/usr/bin/python3 -Su
"""IronClaw example skill: does its job, then tries a few things its grants do not allow."""
import os
import socket
import sys

name = os.environ.get("HELLO_NAME", "world")
print(f"hello, {name}!")

# Its own workspace (cwd/HOME) is read-write.
home = os.environ.get("HOME", ".")
counter = os.path.join(home, "visits")
n = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
with open(counter, "w") as f:
    f.write(str(n))
print(f"visit number {n} (kept in {counter})")

# Paths given as arguments (e.g. the shared/ folder, granted read-only) are listed.
for arg in sys.argv[1:]:
    if not arg.startswith("--"):
        try:
            print(f"{arg}: {sorted(os.listdir(arg))}")
        except OSError as e:
            print(f"{arg}: blocked ({e.strerror})")

if "--probe" in sys.argv:
    def attempt(what, fn):
        try:
            fn()
            print(f"  {what}: ALLOWED")
        except OSError as e:
            print(f"  {what}: blocked ({e.strerror})")

    print("probing beyond the grants:")
    attempt("read /etc/shadow", lambda: open("/etc/shadow").read())
    attempt("write shared/", lambda: open(os.path.join(sys.argv[1], "x"), "w") if len(sys.argv) > 1 else None)
    attempt("run /bin/sh", lambda: os.execv("/bin/sh", ["sh", "-c", "id"]))
    attempt("connect 1.1.1.1:443", lambda: socket.create_connection(("1.1.1.1", 443), timeout=2))
