"""``python fsize_limit.py BYTES CMD...``: run CMD with no file allowed to grow past BYTES (a disk-full stand-in).

RLIMIT_FSIZE is inherited by every process CMD starts (torchrun and its ranks) and needs no
privileges; SIGXFSZ is ignored (and stays ignored across exec) so that an oversized write()
fails with a real EFBIG ("File too large") instead of killing the process.
"""

import os
import resource
import signal
import sys

if __name__ == "__main__":
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    os.execvp(sys.argv[2], sys.argv[2:])
