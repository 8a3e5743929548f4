"""Faults against a real `callserver serve` (issue 12, "nothing lost"): kill -9 at each point of
a message's way to its ticket and transcript, a full recordings disk, silent callers, clock
jumps (faketime) and the dispatcher down across due times. Every test ends with
tests/faults/invariants.py: answered messages = recordings = tickets, due callbacks settled
exactly once, every view of patient data logged."""
