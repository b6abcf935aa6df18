#!/usr/bin/env bash
# Waits (bounded) until no other apt/dpkg holds the dpkg and apt locks, printing a progress line
# every 10 s; exits 1 with a clear message when they are still held after the limit.
# A fresh POS box or cloud VM often runs unattended-upgrades at boot: without this, apt-get
# fails at once with "Could not get lock /var/lib/dpkg/lock-frontend".
#   LOCK_WAIT   seconds to wait at most (default 120)
#   LOCK_FILES  the lock files (default: dpkg's frontend and database locks, apt's lists lock)
#   PYTHON      an interpreter for the check (default python3); run as the user apt runs as
set -euo pipefail
limit=${LOCK_WAIT:-120}
files=${LOCK_FILES:-/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock}
python=${PYTHON:-python3}

# dpkg and apt take fcntl (POSIX) locks; flock(1) would not see them. Exit 0: a lock is held.
held() {
  "$python" - $files <<'PY'
import fcntl, os, sys
for path in sys.argv[1:]:
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        continue  # missing, or not ours to check: apt-get itself will say
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(path)
        sys.exit(0)
    finally:
        os.close(fd)
sys.exit(1)
PY
}

start=$SECONDS
next=0
while lock=$(held); do
  waited=$((SECONDS - start))
  if [ "$waited" -gt "$limit" ]; then  # SECONDS counts whole seconds: at least $limit passed
    echo "bootstrap: $lock is still held by another apt/dpkg after ${limit} s; let it finish" \
      "(ps -ef | grep -E 'apt|dpkg'), then run this again" >&2
    exit 1
  fi
  if [ "$waited" -ge "$next" ]; then
    echo "bootstrap: waiting for another apt/dpkg to release $lock (${waited} s of ${limit} s) ..."
    next=$((next + 10))
  fi
  sleep 1
done
