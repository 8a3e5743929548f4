"""Callbacks: the weekly slot schedule, booking with atomic capacity, and the dispatcher that
dials due callbacks through an injected dialer (the SIP side lives elsewhere).

- phone_numbers.py: which numbers may be called back, and how to read one back
- slots.py: free slots from the clinic's `[callbacks]` schedule
- booking.py: book, move, cancel, mark done, call now
- dispatcher.py: claim due callbacks with a lease, dial, retry, escalate
- states.py: the state machine (which states each action accepts)
- reasons.py: why an attempt ended or a callback waits for staff, as codes
- export.py: `callserver callbacks list --json`
"""
