"""Hostile input and load against a real `callserver serve` (issue 12): every PROTOS c07-sip
case, RTP from the wrong source, a telephone-event flood, and thousands of half-open INVITEs.
Each test bounds its sending in count and time and talks to the server only from outside."""
