"""Measuring a child process's own memory from the inside."""

# Python lines for a child process that measures its own memory: `grown()` is how far its resident set rose
# above what it was at this point. The peak is reset here (Linux's clear_refs): ru_maxrss would carry the peak
# of the process that started the child (the test worker) across exec.
PEAK_SINCE_NOW = """
from pathlib import Path as _Path
def _status(key):
    return int(next(line for line in open("/proc/self/status") if line.startswith(key)).split()[1]) * 1024
_Path("/proc/self/clear_refs").write_text("5")
_before = _status("VmRSS:")
def grown():
    return _status("VmHWM:") - _before
"""
