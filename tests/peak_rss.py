"""Peak resident memory of a test's child process, measured in that process.

A child started from pytest reports `ru_maxrss` no lower than the pytest process it was forked
from (Linux carries the pre-exec peak across exec): 1.09 GB for a decode that peaks at 144 MB
once 800 tests had run. `/proc/self/status`'s VmHWM is the peak of the process's own memory.
"""

# A Python expression for the child's code: its own peak resident set in KiB.
PEAK_KIB = ("(next(int(line.split()[1]) for line in open('/proc/self/status')"
            " if line.startswith('VmHWM')) if __import__('sys').platform == 'linux'"
            " else __import__('resource').getrusage(__import__('resource').RUSAGE_SELF).ru_maxrss)")
