"""Hostile input and load against a real `callserver serve` (issue 12): every PROTOS c07-sip
case, RTP from the wrong source and a telephone-event flood (the half-open INVITE test is on
branch i12-hostile until the memory it keeps is found).
Each test bounds its sending in count and time and talks to the server only from outside."""
