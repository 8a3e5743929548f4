"""The test harness: real peers (sipp, baresip, Kamailio, PostgreSQL), real `callserver serve`
processes, real databases and clinic files, and what a failing test prints about them.

One module per concept, as in the product, so the file can be guessed from the need: ports,
tools (which programs a test needs), server, sipp, baresip, linphone, kamailio, netns (a
network namespace of a test's own for a peer), rtp (the server's RTP as the far end sees it),
audio, database, postgres, clinics, ui (the staff UI's scene), scripted_call (flows without
SIP), speech_model (real recognition), small_disk (a tmpfs to fill up), failure_logs. Every
process is started on loopback (or in a namespace the test made) with ports chosen at run time
and stopped by its own PID.
"""
